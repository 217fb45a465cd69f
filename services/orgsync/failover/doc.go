// Package failover holds orgsync's failure tests (issue 6, "Done when"):
// real OS processes of the service binaries are killed with SIGKILL while
// they work, NATS cluster nodes are killed during a run, and the PLANS stream
// is replayed after every provisioner lost its bbolt state. The tests assert
// what an operator checks afterwards: every request completed, nothing
// duplicated in the target orgs (gcsim counts), the target state identical,
// and the processes' /healthz, /readyz and /metrics telling what happened.
//
// The tests: TestProvisionerFailover (provisioner processes killed, health
// and metrics, wiped state and replayed PLANS), TestNATSNodeFailure (a
// 3-node nats-server cluster, R3 streams, the PLANS leader killed mid-run,
// restarted and rejoined) and TestPoisonPlanFailedAndRetried (a plan failing
// MaxDeliver times shows in `orgsync failed list`, `orgsync failed retry`
// re-drives it once the org is fixed).
//
// The package has no code of its own; the tests are in package
// failover_test. They build the service binaries (orgsync, nats-server)
// once per `go test` run and are skipped under -short. They wait on
// conditions (health endpoints, /jsz, stream info, gcsim counters), never
// on sleeps. ORGSYNC_FAILOVER_FULL=1 runs the full-size scenarios (10 kill
// points); ORGSYNC_FAILOVER_LOGS=N prints the last N lines of every
// process's log also when a test passes; see README.md "Failure testing".
package failover
