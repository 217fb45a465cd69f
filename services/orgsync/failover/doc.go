// Package failover holds orgsync's failure tests (issue 6, "Done when"):
// real OS processes of the service binaries are killed with SIGKILL while
// they work, NATS cluster nodes are killed during a run, and the PLANS stream
// is replayed after every provisioner lost its bbolt state. The tests assert
// what an operator checks afterwards: every request completed, nothing
// duplicated in the target orgs (gcsim counts), the target state identical,
// and the processes' /healthz, /readyz and /metrics telling what happened.
//
// The package has no code of its own; the tests are in package
// failover_test. They build the service binaries (and nats-server) once per
// `go test` run and are skipped under -short. ORGSYNC_FAILOVER_FULL=1 runs
// the full-size scenarios (10 kill points); see README.md "Failure testing".
package failover
