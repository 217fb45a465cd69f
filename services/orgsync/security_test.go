package orgsync

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/orgsync/orgsync/pkg/authclient"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/services/gcsim"
)

// connectAs connects to the dev server as role (closed at cleanup).
func connectAs(t *testing.T, d *Dev, role string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := natsx.Connect(d.NATSURL, role, d.Creds(role), testLogger(t))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestNATSPermissions runs the pipeline under the permissions `orgsync dev`
// gives its embedded server (the ones deploy/nats configures) and tries, as
// the CLI, what only the services may do.
func TestNATSPermissions(t *testing.T) {
	t.Parallel()
	h := startHarness(t, nil, nil)
	rep, _ := h.clone(CloneSpec{SourceOrg: "source", Users: e2eUsers[:1], Targets: []string{"target1"}, RequestedBy: t.Name()})
	if rep.Status != ReportSucceeded {
		t.Fatalf("clone under permissions: %s\n%s", rep.Status, reportJSON(rep))
	}
	// A deadline far above the time a refusal takes: a refused request must
	// fail at once, naming the subject, not time out.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("the CLI cannot request a token", func(t *testing.T) {
		nc, _ := connectAs(t, h.dev, natsx.RoleCLI)
		start := time.Now()
		_, err := authclient.New(nc, nil, "target1").Token()
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"orgsync.auth.token.target1"`) {
			t.Fatalf("token request as the CLI: err = %v; want a permission error naming orgsync.auth.token.target1", err)
		}
		if d := time.Since(start); d > authclient.DefaultRequestTimeout/2 {
			t.Errorf("refusal took %v: it waited for the timeout", d)
		}
	})

	t.Run("the CLI cannot read the token bucket", func(t *testing.T) {
		nc, js := connectAs(t, h.dev, natsx.RoleCLI)
		gctx, stop := natsx.Guard(ctx, nc, nil)
		_, err := js.KeyValue(gctx, natsx.TokenBucket)
		stop()
		if err == nil {
			t.Fatal("the CLI opened KV orgsync-tokens")
		}
		// Below the KV API: a direct get, and a subscription to the bucket's subjects.
		for _, try := range []func() error{
			func() error {
				_, err := nc.Request("$JS.API.DIRECT.GET."+natsx.TokenStream+".$KV."+natsx.TokenBucket+".target1", nil, 2*time.Second)
				return err
			},
			func() error { _, err := nc.SubscribeSync("$KV." + natsx.TokenBucket + ".>"); return err },
			func() error { _, err := nc.SubscribeSync(natsx.InboxPrefix(natsx.RoleProvisioner) + ".>"); return err },
		} {
			gctx, stop := natsx.Guard(ctx, nc, nil)
			_ = try()
			_ = nc.Flush()
			select {
			case <-gctx.Done():
			case <-ctx.Done():
			}
			perr := natsx.Refused(gctx)
			stop()
			if perr == nil {
				t.Errorf("not refused: %v", context.Cause(gctx))
			}
		}
		// Nor may it create or update a stream (one sourcing the token
		// bucket would copy the tokens where the CLI reads).
		gctx, stop = natsx.Guard(ctx, nc, nil)
		_, err = js.CreateStream(gctx, jetstream.StreamConfig{Name: "COPY", Sources: []*jetstream.StreamSource{{Name: natsx.TokenStream}}})
		perr := natsx.Refused(gctx)
		stop()
		if err == nil || perr == nil || perr.Subject != "$JS.API.STREAM.CREATE.COPY" {
			t.Errorf("stream create as the CLI: err %v, refusal %v", err, perr)
		}
	})

	t.Run("the CLI command reports a refusal naming the subject", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		// Another identity's key (a mistaken --creds): the CLI's reply
		// inbox is not that user's, the server refuses the subscription, and
		// the command fails at once with the subject, not at a timeout.
		code := Main(ctx, []string{"status", "no-such-request", "--nats", h.dev.NATSURL, "--creds", natsx.CredsFile(h.dev.CredsDir, natsx.RoleProvisioner)}, IO{Out: &stdout, Err: &stderr})
		if code != ExitFailed || !strings.Contains(stderr.String(), "permission denied") || !strings.Contains(stderr.String(), `"_INBOX_cli.`) {
			t.Errorf("status with another identity's key: exit %d\n%s", code, stderr.String())
		}
	})

	t.Run("a service gets its token", func(t *testing.T) {
		nc, js := connectAs(t, h.dev, natsx.RoleProvisioner)
		tok, err := authclient.New(nc, natsx.NewLazyTokenKV(js), "target1").Token()
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("token as the provisioner: %v", err)
		}
	})

	t.Run("a client without valid credentials is refused", func(t *testing.T) {
		if _, err := natsx.Connect(h.dev.NATSURL, natsx.RoleCLI, natsx.ClientAuth{}, testLogger(t)); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("no credentials: err = %v; want an authorization violation", err)
		}
		kp, _ := nkeys.CreateUser()
		seed, _ := kp.Seed()
		if _, err := natsx.Connect(h.dev.NATSURL, natsx.RoleCLI, natsx.ClientAuth{NkeySeed: string(seed)}, testLogger(t)); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("unknown nkey: err = %v; want an authorization violation", err)
		}
	})

	t.Run("credentials are private files", func(t *testing.T) {
		entries, err := os.ReadDir(h.dev.CredsDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			info, _ := e.Info()
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %04o, want 0600", e.Name(), info.Mode().Perm())
			}
		}
	})
}

// TestNoSecretAtRest clones with `orgsync dev`'s defaults, writes the orgs
// file as `orgsync dev` does, stops, and greps every file of the store
// (JetStream's, bbolt, YAML) for the client secrets and the tokens issued.
func TestNoSecretAtRest(t *testing.T) {
	t.Parallel()
	h := startHarness(t, nil, nil)
	rep, _ := h.clone(CloneSpec{SourceOrg: "source", Users: e2eUsers, Targets: e2eTargets, RequestedBy: t.Name()})
	if rep.Status != ReportSucceeded {
		t.Fatalf("clone: %s\n%s", rep.Status, reportJSON(rep))
	}
	store := filepath.Dir(h.dev.CredsDir)
	if err := h.dev.WriteOrgsFile(filepath.Join(store, "orgs.yaml")); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, o := range gcsim.DemoFixture().Orgs {
		for _, c := range o.Clients {
			secrets = append(secrets, c.ClientSecret)
		}
	}
	// The tokens the pipeline used, read from the cache as the auth service.
	_, js := connectAs(t, h.dev, natsx.RoleAuth)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := natsx.TokenKV(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) == 0 {
		t.Fatalf("token cache keys: %v %v", keys, err)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := authclient.DecodeToken(e.Value())
		if err != nil || tok.GetAccessToken() == "" {
			t.Fatalf("token of %s: %v", k, err)
		}
		secrets = append(secrets, tok.GetAccessToken())
	}
	h.dev.Close() // everything flushed to disk

	files := 0
	err = filepath.WalkDir(store, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for i, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds secret #%d in clear", strings.TrimPrefix(path, store), i) // never the secret itself
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("only %d files in the store: the grep saw nothing", files)
	}
}

// TestCLIRedactsNATSPassword: a URL with user info never comes back in an
// error.
func TestCLIRedactsNATSPassword(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"status", "x", "--nats", "nats://admin:pa55word-xyz@127.0.0.1:1"}, IO{Out: &stdout, Err: &stderr})
	if code == ExitOK || strings.Contains(stdout.String()+stderr.String(), "pa55word-xyz") || !strings.Contains(stderr.String(), "[REDACTED]@127.0.0.1:1") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}
