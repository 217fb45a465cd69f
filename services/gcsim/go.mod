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

require github.com/coder/websocket v1.8.15 // indirect
