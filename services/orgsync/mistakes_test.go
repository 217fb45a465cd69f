package orgsync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/telemetry"
)

// TestCLIUserMistakes drives the command line the way a user gets things
// wrong, against the whole system (as `orgsync dev` runs it): a request id
// reused for another request, an unknown target, unknown users, a --user
// that is no selector, a user that cannot be provisioned, messages that
// can never be handled. Each answer is prompt, precise and said once.
func TestCLIUserMistakes(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	logger, err := telemetry.NewLogger(io.MultiWriter(&testWriter{t: t}, logs), slog.LevelWarn, "text")
	if err != nil {
		t.Fatal(err)
	}
	h := startHarnessConfig(t, DevConfig{Sim: e2eSim(), Logger: logger})
	run := func(args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		code := Main(ctx, append(args, h.natsArgs()...), IO{Out: &stdout, Err: &stderr})
		if ctx.Err() != nil {
			t.Fatalf("%v did not end within 60 s\nstdout %s\nstderr %s", args, stdout.String(), stderr.String())
		}
		return code, stdout.String(), stderr.String()
	}
	jane := "jane.doe@acme.example"

	t.Run("request id reused for another request", func(t *testing.T) {
		if code, out, errOut := run("clone", "--source", "source", "--user", jane, "--target", "target1", "--wait", "--request-id", "dup-test-2"); code != ExitOK {
			t.Fatalf("first clone: exit %d\n%s%s", code, out, errOut)
		}
		start := time.Now()
		code, out, errOut := run("clone", "--source", "source", "--user", jane, "--target", "target1,target2", "--wait", "--request-id", "dup-test-2")
		want := "request id dup-test-2 was already used for a different request (targets: stored target1, submitted target1,target2)"
		if code != ExitFailed || !strings.Contains(errOut, want) || strings.Contains(errOut+out, "it goes on") || time.Since(start) > 10*time.Second {
			t.Errorf("same id, other targets: exit %d after %v, want %d at once with %q\nstdout %s\nstderr %s", code, time.Since(start), ExitFailed, want, out, errOut)
		}
		code, out, errOut = run("clone", "--source", "source", "--user", jane, "--target", "target1", "--wait", "--request-id", "dup-test-2")
		if code != ExitOK || !strings.Contains(errOut, "request dup-test-2 was already submitted; showing its outcome") ||
			!strings.Contains(out, "request dup-test-2: succeeded") || !strings.Contains(out, "target1  changed") {
			t.Errorf("same id, same request: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
	})

	t.Run("unknown target", func(t *testing.T) {
		code, out, errOut := run("clone", "--source", "source", "--user", jane, "--target", "target1,nosuch", "--wait")
		if code != ExitFailed || strings.Contains(out, "pending") || !strings.Contains(out, "not started") || !strings.Contains(out, "unknown target org(s): nosuch") {
			t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
	})

	t.Run("unknown users are all counted", func(t *testing.T) {
		var users []string
		for i := range 30 {
			users = append(users, fmt.Sprintf("ghost%02d@acme.example", i))
		}
		code, out, errOut := run("clone", "--source", "source", "--user", jane+","+strings.Join(users, ","), "--target", "target1", "--wait")
		for _, want := range []string{"30 users not found in source org source: email ghost00@acme.example", "email ghost19@acme.example and 10 more"} {
			if code != ExitFailed || !strings.Contains(out, want) {
				t.Errorf("exit %d, want %d and %q\nstdout %s\nstderr %s", code, ExitFailed, want, out, errOut)
			}
		}
	})

	t.Run("a user that is no selector", func(t *testing.T) {
		code, out, errOut := run("clone", "--source", "source", "--user", "jane.doe", "--target", "target1")
		want := `orgsync clone: invalid clone request: user 1: "jane.doe" is neither an email address nor a Genesys user id`
		if code != ExitUsage || !strings.HasPrefix(errOut, want) {
			t.Errorf("exit %d, want %d and %q\nstdout %s\nstderr %s", code, ExitUsage, want, out, errOut)
		}
	})

	t.Run("failed provisioning is logged and said once", func(t *testing.T) {
		// A same-email user orgsync did not create, and --existing fail.
		c, err := h.direct.Client("target3")
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		div, err := c.GetHomeDivision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateUser(ctx, genesys.CreateUser{Name: "Jane Doe (local)", Email: jane, DivisionID: div.ID}); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := run("clone", "--source", "source", "--user", jane, "--target", "target3", "--existing", "fail", "--wait")
		if code != ExitFailed || strings.Count(out, "already exists in target3 and the policy is FAIL") != 1 {
			t.Errorf("exit %d, want %d and the user's error once\nstdout %s\nstderr %s", code, ExitFailed, out, errOut)
		}
		natsxtest.Eventually(t, 10*time.Second, "a WARN line for the failed user", func() bool {
			return strings.Contains(logs.String(), `level=WARN msg="user provisioning failed"`) && strings.Contains(logs.String(), "policy is FAIL")
		})
		for _, secret := range secretsOf(h) {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the service log holds a client secret")
			}
		}
	})

	t.Run("dead letters are captured", func(t *testing.T) {
		ctx := context.Background()
		var keys []string
		for i := range 10 {
			ack, err := h.client.JS.PublishMsg(ctx, &nats.Msg{Subject: "orgsync.clone.source", Data: []byte("\xff\xffnot a protobuf"), Header: nats.Header{}},
				jetstream.WithMsgID(fmt.Sprintf("poison-%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, fmt.Sprintf("CLONE.%d", ack.Sequence))
		}
		var out string
		natsxtest.Eventually(t, 30*time.Second, "orgsync failed list shows the 10 terminated messages", func() bool {
			_, out, _ = run("failed", "list")
			for _, k := range keys {
				if !strings.Contains(out, k+" ") {
					return false
				}
			}
			return strings.Count(out, "malformed clone request") >= 10
		})
	})
}

// secretsOf lists the client secrets of the harness's orgs.
func secretsOf(h *harness) []string {
	var out []string
	for _, k := range h.dev.Orgs.Keys() {
		if o, ok := h.dev.Orgs.Entry(k); ok && o.ClientSecret != "" {
			out = append(out, o.ClientSecret)
		}
	}
	return out
}
