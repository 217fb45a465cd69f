module github.com/orgsync/orgsync/services/gcsim

go 1.26.0

replace (
	github.com/orgsync/orgsync/pkg => ../../pkg
	github.com/orgsync/orgsync/proto => ../../proto
	github.com/orgsync/orgsync/services/auth => ../auth
	github.com/orgsync/orgsync/services/extractor => ../extractor
	github.com/orgsync/orgsync/services/gcsim => ../gcsim
	github.com/orgsync/orgsync/services/provisioner => ../provisioner
	github.com/orgsync/orgsync/services/reconciler => ../reconciler
	github.com/orgsync/orgsync/services/resolver => ../resolver
)

require (
	github.com/coder/websocket v1.8.15
	github.com/orgsync/orgsync/pkg v0.0.0-00010101000000-000000000000
)

require (
	github.com/getkin/kin-openapi v0.153.0 // indirect
	github.com/go-openapi/jsonpointer v1.0.0 // indirect
	github.com/gorilla/mux v1.8.0 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	go.yaml.in/yaml/v4 v4.0.0 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
