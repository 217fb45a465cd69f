package orgsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/orgsync/orgsync/pkg/natsx"
)

const natsCredsSummary = "generate the NATS identities of a deployment: an nkey seed per service and the CLI, the JetStream key, the public keys for the servers"

// runNATSCreds is `orgsync nats-creds --out DIR`: what `orgsync dev` makes
// for itself, for a deployment (deploy/k8s/15-nats-secrets.yaml,
// docker-compose.yml). Existing seeds and key are kept: delete one file and
// run it again to rotate that credential.
func runNATSCreds(_ context.Context, args []string, out IO) int {
	fs := newFlagSet("nats-creds", "--out DIR", out)
	dir := fs.String("out", filepath.Join("deploy", "secrets"), "directory for <role>.nk (seeds, 0600), jetstream.key, users.env (public keys) and nats.env (users.env + ORGSYNC_JS_KEY, for the NATS servers)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	pubs, err := natsx.EnsureCreds(*dir)
	if err != nil {
		return fail(out, "%v", err)
	}
	key, err := natsx.EnsureKeyFile(filepath.Join(*dir, JetStreamKeyFile))
	if err != nil {
		return fail(out, "%v", err)
	}
	var users strings.Builder
	for _, role := range natsx.Roles() {
		fmt.Fprintf(&users, "%s=%s\n", natsx.NkeyEnv(role), pubs[role])
	}
	if err := os.WriteFile(filepath.Join(*dir, "users.env"), []byte(users.String()), 0o644); err != nil {
		return fail(out, "%v", err)
	}
	serverEnv := filepath.Join(*dir, "nats.env")
	if err := os.WriteFile(serverEnv, []byte(users.String()+"ORGSYNC_JS_KEY="+key+"\n"), 0o600); err != nil {
		return fail(out, "%v", err)
	}
	if err := os.Chmod(serverEnv, 0o600); err != nil {
		return fail(out, "%v", err)
	}
	fmt.Fprintf(out.Out, "NATS identities in %s: %s (<role>.nk, mode 0600), jetstream.key, users.env, nats.env\n", *dir, strings.Join(natsx.Roles(), ", "))
	return ExitOK
}
