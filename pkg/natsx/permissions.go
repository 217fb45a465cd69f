package natsx

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS identities (DESIGN.md §7): every service and the CLI connect as their
// own user. The names are the service command names plus "cli" (the orgsync
// command line and any other system that submits clone requests).
const (
	RoleAuth        = "auth"
	RoleExtractor   = "extractor"
	RoleResolver    = "resolver"
	RoleProvisioner = "provisioner"
	RoleIntegrator  = "integrator"
	RoleReconciler  = "reconciler"
	RoleCLI         = "cli"
)

// Roles lists every identity, in the order the server config lists them.
func Roles() []string {
	return []string{RoleAuth, RoleExtractor, RoleResolver, RoleProvisioner, RoleIntegrator, RoleReconciler, RoleCLI}
}

// KV buckets and streams that are not in Streams(), owned by other packages
// (their names are checked against these in the services' tests). The token
// bucket is not here: it has its own rules.
const (
	AdvisoryStream  = "ADVISORIES"         // pkg/deadletter
	FailedBucket    = "orgsync-failed"     // pkg/deadletter
	TrackingBucket  = "orgsync-tracking"   // extractor writes, reconciler watches
	CursorBucket    = "orgsync-reconciler" // reconciler's sweep cursor
	DriftBucket     = "orgsync-drift"      // provisioner's drift baseline
	CRMHealthBucket = "orgsync-crm"        // integrator's CRM sync results

	// Sync sets: the reconciler alone writes them (it validates every
	// apply); the CLI reads them for get/describe and changes them by
	// request on SyncSetApplySubject / SyncSetDeleteSubject.
	SyncSetBucket        = "orgsync-syncsets"       // the sets (protobuf SyncSet by name)
	SyncSetStatusBucket  = "orgsync-syncset-status" // membership and last converge
	SyncSetApplySubject  = "orgsync.syncset.apply"  // ApplySyncSetRequest, request/reply
	SyncSetDeleteSubject = "orgsync.syncset.delete" // DeleteSyncSetRequest, request/reply
)

// syncSetBuckets are the buckets the reconciler writes and the CLI reads.
func syncSetBuckets() []string { return []string{SyncSetBucket, SyncSetStatusBucket} }

// workBuckets are the KV buckets every service may create, read and write.
func workBuckets() []string {
	return []string{FailedBucket, TrackingBucket, CursorBucket, DriftBucket, CRMHealthBucket}
}

// InboxPrefix is the reply-subject prefix of role's connections. Each user
// may subscribe to its own prefix only, so no client reads another's
// replies (JetStream acks, token replies, consumer deliveries).
func InboxPrefix(role string) string { return "_INBOX_" + role }

// kvStream is the stream behind KV bucket b.
func kvStream(b string) string { return "KV_" + b }

// workStreams are every stream the services create: the pipeline's, the
// dead-letter advisories and the work KV buckets (not the token bucket).
func workStreams() []string {
	var out []string
	for _, s := range Streams() {
		out = append(out, s.Name)
	}
	out = append(out, AdvisoryStream)
	for _, b := range workBuckets() {
		out = append(out, kvStream(b))
	}
	return out
}

// jsRead is what reading stream s takes: its info, consumers on it (create,
// fetch, info, delete, unpin), direct and stored message gets, acks and flow
// control replies.
func jsRead(s string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + s,
		"$JS.API.STREAM.MSG.GET." + s,
		"$JS.API.DIRECT.GET." + s, "$JS.API.DIRECT.GET." + s + ".>",
		"$JS.API.CONSUMER.*." + s, "$JS.API.CONSUMER.*." + s + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + s + ".>",
		"$JS.API.CONSUMER.MSG.NEXT." + s + ".>",
		"$JS.ACK." + s + ".>", "$JS.FC." + s + ".>",
	}
}

// jsManage is creating, updating and purging stream s (services ensure the
// topology at start-up; replay tools purge nothing).
func jsManage(s string) []string {
	return []string{"$JS.API.STREAM.CREATE." + s, "$JS.API.STREAM.UPDATE." + s, "$JS.API.STREAM.PURGE." + s}
}

// subj are the pipeline subjects (publish side of a role).
var subj = struct{ clone, change, snapshot, plan, integration, event, reconcile, token, orgsCheck string }{
	clone: "orgsync.clone.>", change: "orgsync.change.>", snapshot: "orgsync.snapshot.>", plan: "orgsync.plan.>",
	integration: "orgsync.integration.>", event: "orgsync.event.>", reconcile: "orgsync.reconcile.>",
	token: TokenSubjectWildcard, orgsCheck: OrgsCheckSubject,
}

// Permissions returns the publish/subscribe permissions of role. It is the
// single definition behind the embedded server of `orgsync dev` and the
// authorization block of deploy/nats (AuthorizationConfig renders it).
//
//   - auth alone subscribes to orgsync.auth.token.* (and answers through
//     allow_responses) and writes, creates and reads KV orgsync-tokens;
//   - the services that call Genesys (all others) publish token requests and
//     read the token bucket (pkg/authclient reads the cache before asking);
//   - every service ensures and uses the work streams and buckets, and
//     publishes what it produces;
//   - the reconciler alone answers sync set requests and writes the sync
//     set buckets; it publishes the clone requests of a set's joiners and
//     the deactivate plans of its leavers;
//   - the CLI publishes clone requests, changes and replays, asks the
//     reconciler (reconcile, sync set apply/delete), reads every stream,
//     work bucket and the sync set buckets, and retries dead letters; it can neither request a token nor touch KV_orgsync-tokens,
//     and creates or updates no stream (a stream update could source the
//     token bucket into a readable stream).
func Permissions(role string) (*server.Permissions, error) {
	pub := []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES"}
	sub := []string{InboxPrefix(role) + ".>"}
	var responses bool
	service := role != RoleCLI
	if service {
		for _, s := range workStreams() {
			pub = append(pub, jsManage(s)...)
			pub = append(pub, jsRead(s)...)
		}
		for _, b := range workBuckets() {
			pub = append(pub, "$KV."+b+".>")
		}
	}
	tokens := TokenStream
	switch role {
	case RoleAuth:
		pub = append(pub, jsManage(tokens)...)
		pub = append(pub, jsRead(tokens)...)
		pub = append(pub, "$KV."+TokenBucket+".>", subj.event)
		// The nats micro framework answers $SRV.PING/INFO/STATS.
		// orgs check: the auth service holds the credentials, so it
		// answers the CLI's `orgsync orgs check` (the CLI may not ask for
		// tokens itself).
		sub = append(sub, subj.token, subj.orgsCheck, "$SRV.>")
		responses = true
	case RoleExtractor:
		pub = append(pub, subj.snapshot, subj.event)
	case RoleResolver:
		pub = append(pub, subj.plan, subj.event)
	case RoleProvisioner:
		pub = append(pub, subj.integration, subj.event)
	case RoleIntegrator:
		pub = append(pub, subj.event)
	case RoleReconciler:
		for _, b := range syncSetBuckets() {
			pub = append(pub, jsManage(kvStream(b))...)
			pub = append(pub, jsRead(kvStream(b))...)
			pub = append(pub, "$KV."+b+".>")
		}
		pub = append(pub, subj.change, subj.event, subj.clone, subj.plan)
		sub = append(sub, subj.reconcile, SyncSetApplySubject, SyncSetDeleteSubject)
		responses = true
	case RoleCLI:
		for _, s := range workStreams() {
			pub = append(pub, jsRead(s)...)
		}
		for _, b := range syncSetBuckets() {
			pub = append(pub, jsRead(kvStream(b))...)
		}
		pub = append(pub, "$KV."+FailedBucket+".>", // failed --retry removes the record
			subj.clone, subj.change, subj.snapshot, subj.plan, subj.integration, subj.reconcile, subj.orgsCheck,
			SyncSetApplySubject, SyncSetDeleteSubject)
	default:
		return nil, fmt.Errorf("natsx: unknown NATS role %q (known: %s)", role, strings.Join(Roles(), ", "))
	}
	if service && role != RoleAuth {
		pub = append(pub, subj.token, "$JS.API.STREAM.INFO."+tokens, "$JS.API.STREAM.MSG.GET."+tokens,
			"$JS.API.DIRECT.GET."+tokens, "$JS.API.DIRECT.GET."+tokens+".>")
	}
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: dedupe(pub)},
		Subscribe: &server.SubjectPermission{Allow: dedupe(sub)},
	}
	if responses {
		p.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: 0}
	}
	return p, nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// NkeyEnv is the environment variable holding role's public nkey in the
// deployed server config (deploy/nats/authorization.conf).
func NkeyEnv(role string) string {
	return "ORGSYNC_NKEY_" + strings.ToUpper(role)
}

// AuthorizationConfig renders the nats-server authorization block: one nkey
// user per role with Permissions(role). nkey(role) is the value after
// "nkey:" — a public key, or a $VARIABLE the server resolves from its
// environment (deploy).
func AuthorizationConfig(nkey func(role string) string) (string, error) {
	var b strings.Builder
	b.WriteString("# Generated from pkg/natsx/permissions.go (natsx.AuthorizationConfig); edit there\n")
	b.WriteString("# and run `go test ./services/orgsync -run TestDeploy -update`.\n")
	b.WriteString("# One nkey user per orgsync service and one for the CLI / other systems; the\n")
	b.WriteString("# public keys come from the environment (seeds stay with each service).\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, role := range Roles() {
		p, err := Permissions(role)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %s\n      permissions: {\n", role, nkey(role))
		writeList(&b, "publish", p.Publish.Allow)
		writeList(&b, "subscribe", p.Subscribe.Allow)
		if p.Response != nil {
			fmt.Fprintf(&b, "        allow_responses: {max: %d}\n", p.Response.MaxMsgs)
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func writeList(b *strings.Builder, name string, allow []string) {
	sorted := append([]string(nil), allow...)
	sort.Strings(sorted)
	fmt.Fprintf(b, "        %s: {allow: [\n", name)
	for _, s := range sorted {
		fmt.Fprintf(b, "          %q\n", s)
	}
	b.WriteString("        ]}\n")
}

// DeployAuthorizationConfig is AuthorizationConfig with the public keys
// taken from the server's environment ($ORGSYNC_NKEY_<ROLE>): the content of
// deploy/nats/authorization.conf and of the Kubernetes nats-config.
func DeployAuthorizationConfig() (string, error) {
	return AuthorizationConfig(func(role string) string { return "$" + NkeyEnv(role) })
}
