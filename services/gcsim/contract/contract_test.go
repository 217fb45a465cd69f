// Package contract runs the official Genesys Cloud JavaScript SDK
// (purecloud-platform-client-v2, pinned in package-lock.json) against gcsim:
// every operation pkg/genesys calls, with orgsync's parameters, and the
// notification WebSocket. Every answer is checked against the model the SDK
// declares (pkg/apispec/sdkmodels.json, generated from the SDK's index.d.ts
// by genmodels.mjs). Node.js and `npm ci` in this folder are prerequisites
// (`make contract-deps`); the test fails, not skips, without them.
package contract

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/apispec"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/services/gcsim"
)

type line struct {
	Declared []string          `json:"declared"`
	Case     string            `json:"case"`
	Op       string            `json:"op"`
	SDK      string            `json:"sdk"`
	Status   int               `json:"status"`
	Headers  map[string]string `json:"headers"`
	Body     json.RawMessage   `json:"body"`
	Error    string            `json:"error"`
	WS       string            `json:"ws"`
	Topic    string            `json:"topic"`
	Message  struct {
		TopicName string          `json:"topicName"`
		EventBody json.RawMessage `json:"eventBody"`
	} `json:"message"`
	Fatal string `json:"fatal"`
}

const installHint = "run `make contract-deps` (npm ci in services/gcsim/contract) on a machine with Node.js >= 18"

// node runs a script of this folder and returns its stdout.
func node(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the SDK contract test needs Node.js: %v; %s", err, installHint)
	}
	if _, err := os.Stat("node_modules/purecloud-platform-client-v2/package.json"); err != nil {
		t.Fatalf("the SDK is not installed in services/gcsim/contract/node_modules: %s", installHint)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// TestSDKModelsAreCurrent: sdkmodels.json is what genmodels.mjs makes of
// the installed SDK.
func TestSDKModelsAreCurrent(t *testing.T) {
	t.Parallel()
	node(t, nil, "genmodels.mjs", "--check")
}

func TestSDKContract(t *testing.T) {
	t.Parallel()
	sim, err := gcsim.New(gcsim.Config{NotificationHeartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(gcsim.DemoFixture()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)

	cfg, _ := json.Marshal(map[string]string{
		"url": srv.URL, "clientId": "source-client", "clientSecret": "source-secret",
		"userId": "5f0c2a4e-0000-4000-8000-0000000000a1", "email": "john.smith@acme.example",
		"authority": "contract", "externalKey": "k-1",
	})
	out := node(t, []string{"CONTRACT=" + string(cfg)}, "runner.mjs")

	models, err := apispec.LoadSDKModels()
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	answered := map[string]bool{}
	ws := map[string]line{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("runner output %q: %v", sc.Text(), err)
		}
		switch {
		case l.Declared != nil:
			declared = l.Declared
		case l.Fatal != "":
			t.Errorf("runner stopped: %s", l.Fatal)
		case l.WS != "":
			ws[l.WS] = l
		case l.Error != "":
			t.Errorf("%s (%s via %s): status %d: %s", l.Case, l.Op, l.SDK, l.Status, l.Error)
		default:
			checkAnswer(t, models, l)
			answered[l.Op] = true
		}
	}

	// Every operation of pkg/genesys has a case, and every case answered.
	ops := genesys.Operations()
	for _, op := range ops {
		if !slices.Contains(declared, op) {
			t.Errorf("pkg/genesys calls %s: add a case to services/gcsim/contract/runner.mjs", op)
		}
	}
	for _, op := range declared {
		if !slices.Contains(ops, op) {
			t.Errorf("runner.mjs declares %s, which pkg/genesys does not call", op)
		} else if !answered[op] {
			t.Errorf("runner.mjs declares %s but no call of it was answered", op)
		}
	}

	// The WebSocket: a heartbeat, then the audit event of a change.
	hb := ws["heartbeat"]
	var beat struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(hb.Message.EventBody, &beat); err != nil || hb.Message.TopicName != "channel.metadata" || beat.Message == "" {
		t.Errorf("websocket heartbeat %+v, want topicName channel.metadata with eventBody.message", hb.Message)
	}
	audit, ok := ws["audit"]
	if !ok {
		t.Fatal("no audit event arrived on the WebSocket after a change")
	}
	model := models.Topics["v2.audits.entitytype.{type}.entityid.{id}"]
	expectOK(t, "websocket audit event body", models.Check(model, audit.Message.EventBody))
}

// checkAnswer checks one SDK call's answer: a 2xx from the SDK method the
// SDK maps to the operation, the rate-limit headers, and a body its model
// allows.
func checkAnswer(t *testing.T, models *apispec.SDKModels, l line) {
	t.Helper()
	where := l.Case + " (" + l.Op + ")"
	sdk, ok := models.Operations[l.Op]
	switch {
	case !ok:
		t.Errorf("%s: not an operation of the spec subset", where)
		return
	case !slices.ContainsFunc(sdk.APIs, func(api string) bool { return api+"."+sdk.Method == l.SDK }):
		t.Errorf("%s: called through %s, the SDK's method for it is %s of %s", where, l.SDK, sdk.Method, strings.Join(sdk.APIs, ", "))
	case l.Status/100 != 2:
		t.Errorf("%s: status %d", where, l.Status)
	}
	for _, h := range []string{"inin-ratelimit-count", "inin-ratelimit-allowed", "inin-ratelimit-reset"} {
		if l.Headers[h] == "" {
			t.Errorf("%s: no %s header", where, h)
		}
	}
	if len(l.Body) > 0 && string(l.Body) != "null" {
		expectOK(t, where, models.CheckResponse(l.Op, l.Body))
	}
}

// expectOK fails on problems.
func expectOK(t *testing.T, check string, problems []string) {
	t.Helper()
	if len(problems) > 0 {
		t.Errorf("%s: %s", check, strings.Join(problems, "; "))
	}
}
