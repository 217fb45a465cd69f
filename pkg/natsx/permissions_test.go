package natsx_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/orgsync/orgsync/pkg/natsx"
)

// TestAuthorizationConfigParsesToPermissions: the rendered block (what
// deploy/nats includes) gives nats-server exactly Permissions(role).
func TestAuthorizationConfigParsesToPermissions(t *testing.T) {
	pubs := map[string]string{}
	for _, role := range natsx.Roles() {
		kp, _ := nkeys.CreateUser()
		pubs[role], _ = kp.PublicKey()
		t.Setenv(natsx.NkeyEnv(role), pubs[role])
	}
	conf, err := natsx.AuthorizationConfig(func(role string) string { return "$" + natsx.NkeyEnv(role) })
	if err != nil {
		t.Fatal(err)
	}
	var opts server.Options
	if err := opts.ProcessConfigString(conf); err != nil {
		t.Fatalf("nats-server rejects the rendered config: %v\n%s", err, conf)
	}
	if len(opts.Nkeys) != len(natsx.Roles()) {
		t.Fatalf("%d nkey users, want %d", len(opts.Nkeys), len(natsx.Roles()))
	}
	for i, role := range natsx.Roles() {
		u := opts.Nkeys[i]
		want, _ := natsx.Permissions(role)
		if u.Nkey != pubs[role] {
			t.Errorf("%s: nkey %s, want %s", role, u.Nkey, pubs[role])
		}
		sorted := func(s []string) []string { s = append([]string(nil), s...); sort.Strings(s); return s }
		if !reflect.DeepEqual(sorted(u.Permissions.Publish.Allow), sorted(want.Publish.Allow)) ||
			!reflect.DeepEqual(sorted(u.Permissions.Subscribe.Allow), sorted(want.Subscribe.Allow)) ||
			(u.Permissions.Response == nil) != (want.Response == nil) {
			t.Errorf("%s: parsed permissions differ from Permissions(%q)", role, role)
		}
	}
}

// TestOnlyAuthTouchesTokens reads the permission table the way an auditor
// would: who may answer or request tokens and reach KV orgsync-tokens.
func TestOnlyAuthTouchesTokens(t *testing.T) {
	for _, role := range natsx.Roles() {
		p, err := natsx.Permissions(role)
		if err != nil {
			t.Fatal(err)
		}
		pub, sub := strings.Join(p.Publish.Allow, " "), strings.Join(p.Subscribe.Allow, " ")
		writesTokens := strings.Contains(pub, "$KV."+natsx.TokenBucket) || strings.Contains(pub, "STREAM.CREATE."+natsx.TokenStream)
		answers := strings.Contains(sub, natsx.TokenSubjectPrefix)
		requests := strings.Contains(pub, natsx.TokenSubjectPrefix)
		reads := strings.Contains(pub, "DIRECT.GET."+natsx.TokenStream)
		switch role {
		case natsx.RoleAuth:
			if !writesTokens || !answers {
				t.Errorf("auth: writes tokens %v, answers %v", writesTokens, answers)
			}
		case natsx.RoleCLI:
			if writesTokens || answers || requests || reads || strings.Contains(pub, "STREAM.CREATE") || strings.Contains(pub, "STREAM.UPDATE") {
				t.Errorf("cli may touch tokens or streams: %s", pub)
			}
		default:
			if writesTokens || answers || !requests || !reads {
				t.Errorf("%s: writes %v answers %v requests %v reads %v", role, writesTokens, answers, requests, reads)
			}
		}
		if sub != natsx.InboxPrefix(role)+".>" && !strings.HasPrefix(sub, natsx.InboxPrefix(role)+".> ") {
			t.Errorf("%s subscribes first to %q, want its own inbox", role, sub)
		}
		if strings.Contains(sub, "_INBOX.") {
			t.Errorf("%s may read the shared _INBOX", role)
		}
	}
	if _, err := natsx.Permissions("admin"); err == nil {
		t.Error("unknown role accepted")
	}
}

func TestAsPermissionError(t *testing.T) {
	err := fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "orgsync.auth.token.t1"`)
	perr := natsx.AsPermissionError(err)
	if perr == nil || perr.Subject != "orgsync.auth.token.t1" || perr.Op != "publish to" || !errors.Is(perr, nats.ErrPermissionViolation) {
		t.Fatalf("parsed %#v", perr)
	}
	if natsx.AsPermissionError(errors.New("other")) != nil {
		t.Fatal("other error parsed as a violation")
	}
}

func TestRedactURL(t *testing.T) {
	got := natsx.RedactURL("nats://user:pw@host1:4222,nats://host2:4222")
	if strings.Contains(got, "pw") || got != "nats://[REDACTED]@host1:4222,nats://host2:4222" {
		t.Fatalf("RedactURL = %q", got)
	}
}

func TestClientAuthRefusesReadableCredsAndMixedSources(t *testing.T) {
	dir := t.TempDir()
	if _, err := natsx.EnsureCreds(dir); err != nil {
		t.Fatal(err)
	}
	p := natsx.CredsFile(dir, natsx.RoleCLI)
	if _, err := (natsx.ClientAuth{Creds: p}).Options(natsx.RoleCLI); err != nil {
		t.Fatalf("0600 seed: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (natsx.ClientAuth{Creds: p}).Options(natsx.RoleCLI); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("0644 seed: err = %v", err)
	}
	if _, err := (natsx.ClientAuth{User: "u"}).Options(natsx.RoleCLI); err == nil || !strings.Contains(err.Error(), natsx.EnvPassword) {
		t.Errorf("user without password: err = %v", err)
	}
	if _, err := (natsx.ClientAuth{Creds: filepath.Join(dir, "none"), User: "u", Password: "p"}).Options(natsx.RoleCLI); err == nil || !strings.Contains(err.Error(), "give one of") {
		t.Errorf("two credential sources: err = %v", err)
	}
}

// TestOnlyReconcilerWritesSyncSets: the reconciler validates every sync
// set, so it alone answers apply/delete and writes the two buckets; the
// CLI (and other systems) request and read; the other services do neither.
func TestOnlyReconcilerWritesSyncSets(t *testing.T) {
	for _, role := range natsx.Roles() {
		p, err := natsx.Permissions(role)
		if err != nil {
			t.Fatal(err)
		}
		pub, sub := p.Publish.Allow, p.Subscribe.Allow
		answers := slices.Contains(sub, natsx.SyncSetApplySubject) && slices.Contains(sub, natsx.SyncSetDeleteSubject)
		requests := slices.Contains(pub, natsx.SyncSetApplySubject) && slices.Contains(pub, natsx.SyncSetDeleteSubject)
		for _, b := range []string{natsx.SyncSetBucket, natsx.SyncSetStatusBucket} {
			writes := slices.Contains(pub, "$KV."+b+".>") || slices.Contains(pub, "$JS.API.STREAM.CREATE.KV_"+b)
			reads := slices.Contains(pub, "$JS.API.DIRECT.GET.KV_"+b+".>") && slices.Contains(pub, "$JS.API.CONSUMER.*.KV_"+b+".>")
			switch role {
			case natsx.RoleReconciler:
				if !writes || !reads || !answers || requests {
					t.Errorf("reconciler on %s: writes %v reads %v answers %v requests %v", b, writes, reads, answers, requests)
				}
			case natsx.RoleCLI:
				if writes || !reads || answers || !requests {
					t.Errorf("cli on %s: writes %v reads %v answers %v requests %v", b, writes, reads, answers, requests)
				}
			default:
				if writes || reads || answers || requests {
					t.Errorf("%s on %s: writes %v reads %v answers %v requests %v", role, b, writes, reads, answers, requests)
				}
			}
		}
	}
	// A set's joiners are clone requests and its leavers' deactivations
	// plans: the reconciler publishes both.
	p, _ := natsx.Permissions(natsx.RoleReconciler)
	if !slices.Contains(p.Publish.Allow, "orgsync.clone.>") || !slices.Contains(p.Publish.Allow, "orgsync.plan.>") {
		t.Errorf("reconciler cannot publish clone requests or plans: %v", p.Publish.Allow)
	}
}
