// Package natsx is orgsync's messaging foundation over NATS JetStream: the
// stream and KV topology (EnsureStreams), subject builders with org-key
// validation, protobuf publishing with dedupe ids and trace propagation
// (Publish), the consumer runner every service uses (Consume), and an
// embedded nats-server for tests and `orgsync dev` (StartEmbedded).
//
// Subjects (DESIGN.md section 3) are partitioned by orgsync org key:
//
//	orgsync.clone.<src>          CLONE        CloneRequest
//	orgsync.change.<src>         CHANGES      ChangeEvent
//	orgsync.snapshot.<src>       SNAPSHOTS    Snapshot
//	orgsync.plan.<target>        PLANS        Plan
//	orgsync.integration.<target> INTEGRATIONS CRM integration work
//	orgsync.event.<org>.<kind>   EVENTS       Event
//	orgsync.auth.token.<org>     (core request/reply, no stream) TokenRequest/TokenReply
package natsx
