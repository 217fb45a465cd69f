# orgsync — every target works on a fresh machine that has only Go installed
# (and Node.js for `make test`'s SDK contract test): tools (buf,
# protoc-gen-go) run through `go run` at pinned versions, the official Genesys
# Cloud JavaScript SDK through `npm ci` from a committed lockfile.

BUF_VERSION := v1.75.0
BUF         := go run github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
# Every module of the workspace, as package patterns.
PKGS         = $(shell go list -m -f '{{.Path}}/...')
GOTESTFLAGS ?= -count=1 -timeout 15m
BIN         := bin
CONTRACT    := services/gcsim/contract

.PHONY: all build test gotest contract-deps proto proto-check lint tidy-check layer-check fmt demo bench clean

all: build

## build: compile every service binary into ./bin
build:
	@mkdir -p $(BIN)
	go build -ldflags "-X github.com/orgsync/orgsync/services/orgsync.revision=$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
	  -o $(BIN)/ github.com/orgsync/orgsync/services/.../cmd/...

## test: the whole test suite, plus the protobuf lint/staleness check (what CI runs)
test: proto-check gotest

gotest: contract-deps
	go vet $(PKGS)
	go test $(GOTESTFLAGS) $(PKGS)

## contract-deps: install the pinned Genesys Cloud JavaScript SDK the contract test runs (npm ci, again only when the lockfile changes)
contract-deps: $(CONTRACT)/node_modules/.package-lock.json

$(CONTRACT)/node_modules/.package-lock.json: $(CONTRACT)/package-lock.json
	cd $(CONTRACT) && npm ci --no-audit --no-fund

## proto: regenerate the Go code of proto/ (commit the result)
proto:
	$(BUF) lint
	$(BUF) generate

## proto-check: fail when buf lint fails or the committed .pb.go files are stale
proto-check:
	$(BUF) lint
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  $(BUF) generate -o $$tmp && \
	  if ! diff -r -q --exclude='*.proto' --exclude='go.*' $$tmp/proto/orgsync proto/orgsync >/dev/null; then \
	    diff -r --exclude='*.proto' --exclude='go.*' $$tmp/proto/orgsync proto/orgsync | head -40; \
	    echo "proto-check: generated code is stale: run 'make proto' and commit"; exit 1; \
	  fi && echo "proto-check: buf lint ok, generated code up to date"

## lint: gofmt, go mod tidy (every module of go.work unchanged), pkg/ never depends on services/, go vet, buf lint
lint: tidy-check layer-check
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
	$(BUF) lint

# Module directories of the workspace, from go.work's use directives.
MODDIRS = $(shell go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p')

## tidy-check: fail when `go mod tidy` would change any module of go.work (go mod tidy -diff changes nothing)
tidy-check:
	@status=0; for d in $(MODDIRS); do \
	  if ! out=$$(cd $$d && go mod tidy -diff 2>&1); then \
	    echo "$$d: go.mod/go.sum not tidy (run: cd $$d && go mod tidy):"; echo "$$out" | head -20; status=1; \
	  fi; \
	done; \
	if [ $$status = 0 ]; then echo "tidy-check: every module tidy"; fi; exit $$status

## layer-check: fail when pkg/ depends on services/, even in tests (layers point down)
layer-check:
	@out=$$(go list -deps -test -f '{{.ImportPath}}' github.com/orgsync/orgsync/pkg/... | grep '^github.com/orgsync/orgsync/services/'); \
	  if [ -n "$$out" ]; then echo "layer-check: pkg/ depends on services/ (move the code or test that needs it out of pkg):"; echo "$$out"; exit 1; fi; \
	  echo "layer-check: pkg/ depends on no service"

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

## demo: clone the demo fixture's reference users into three target orgs, twice
demo:
	go run github.com/orgsync/orgsync/services/orgsync/cmd/orgsync demo

## bench: benchmark scenarios against gcsim; prints a table, writes bench/results.json
bench:
	go test -run '^$$' -bench . -benchmem $(PKGS)
	go run github.com/orgsync/orgsync/services/orgsync/cmd/orgsync bench --out bench/results.json

clean:
	rm -rf $(BIN) .orgsync
