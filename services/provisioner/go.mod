module github.com/orgsync/orgsync/services/provisioner

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
	github.com/orgsync/orgsync/pkg v0.0.0-00010101000000-000000000000
	github.com/orgsync/orgsync/proto v0.0.0-00010101000000-000000000000
)

require (
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
