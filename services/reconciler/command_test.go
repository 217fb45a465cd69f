package reconciler

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/orgsync/orgsync/pkg/service"
)

func TestCommandFlagsAndSecretRedaction(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	fs, _, build := service.FlagSet(Command(), &out)
	if build == nil {
		t.Fatal("no builder")
	}
	if err := fs.Parse([]string{"--sweep-interval=1h", "--no-notifications", "--webhook-addr=127.0.0.1:0", "--webhook-tolerance=2m"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"webhook-addr", "webhook-path", "webhook-tolerance", "webhook-max-body", "no-webhook", "sweep-interval", "no-notifications", "channel-renew-margin"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s missing", name)
		}
	}
	cfg := Config{WebhookSecret: testSecret}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String()} {
		if strings.Contains(s, testSecret) || !strings.Contains(s, "REDACTED") {
			t.Errorf("config printed with its secret or without redaction: %s", s)
		}
	}
}
