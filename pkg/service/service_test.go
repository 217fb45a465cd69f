package service

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

type fakeReady struct{ ready bool }

func (f *fakeReady) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f *fakeReady) Ready() bool                   { return f.ready }

func TestReadyzReflectsNATSAndConsumers(t *testing.T) {
	srv := natsxtest.StartServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	svc := &fakeReady{}
	h := HealthHandler(nc, svc)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "consumers not bound") {
		t.Fatalf("/readyz before ready = %d %q", code, body)
	}
	svc.ready = true
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz when ready = %d", code)
	}
	nc.Close()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not connected to NATS") {
		t.Fatalf("/readyz after disconnect = %d %q", code, body)
	}
}

func TestHelpListsSharedAndOwnFlags(t *testing.T) {
	var out bytes.Buffer
	cmd := Command{Name: "demo", Summary: "does demo things", Flags: func(fs *flag.FlagSet) Builder {
		fs.String("own", "", "an own flag")
		return nil
	}}
	fs, _, _ := FlagSet(cmd, &out)
	fs.Usage()
	for _, want := range []string{"does demo things", "-nats", "-orgs", "-http", "-trace", "-own"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBudgetShare(t *testing.T) {
	t.Parallel()
	reader := Command{Name: "reader", RateShare: 0.25}
	owner := Command{Name: "owner"}
	for _, tc := range []struct {
		cmd  Command
		flag float64
		want float64
		err  string
	}{
		{reader, 0, 0.25, ""},
		{reader, 0.8, 0.8, ""},
		{owner, 0, 1, ""},
		{owner, 1.5, 0, "--rate-share must be in (0, 1], got 1.5"},
		{owner, -0.1, 0, "--rate-share must be in (0, 1]"},
	} {
		got, err := tc.cmd.BudgetShare(tc.flag)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s --rate-share %v: error %v, want %q", tc.cmd.Name, tc.flag, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s --rate-share %v = %v, %v; want %v", tc.cmd.Name, tc.flag, got, err, tc.want)
		}
	}
}
