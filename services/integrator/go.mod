module github.com/orgsync/orgsync/services/integrator

go 1.26.0

replace (
	github.com/orgsync/orgsync/pkg => ../../pkg
	github.com/orgsync/orgsync/proto => ../../proto
	github.com/orgsync/orgsync/services/auth => ../auth
	github.com/orgsync/orgsync/services/extractor => ../extractor
	github.com/orgsync/orgsync/services/gcsim => ../gcsim
	github.com/orgsync/orgsync/services/integrator => ../integrator
	github.com/orgsync/orgsync/services/provisioner => ../provisioner
	github.com/orgsync/orgsync/services/reconciler => ../reconciler
	github.com/orgsync/orgsync/services/resolver => ../resolver
)

require (
	github.com/orgsync/orgsync/pkg v0.0.0-00010101000000-000000000000
	github.com/orgsync/orgsync/proto v0.0.0-00010101000000-000000000000
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nats.go v1.55.0 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
