package telemetry

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

type credentials struct{ ClientID, ClientSecret string }

// LogValue exposes the secret on purpose: the handler must still hide it
// because the attribute key is secret-looking.
func (c credentials) LogValue() slog.Value { return slog.StringValue(c.ClientSecret) }

func TestNewLoggerRedactsSecrets(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log, err := NewLogger(&buf, slog.LevelDebug, format)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("token fetched",
				"org", "acme-src",
				"client_secret", "s3cr3t-1",
				"clientSecret", "s3cr3t-2",
				"Authorization", "Basic s3cr3t-3",
				"access_token", "s3cr3t-4",
				"PASSWORD", "s3cr3t-5",
				"creds_secret", credentials{"id", "s3cr3t-6"},
				slog.Group("token", "value", "s3cr3t-7"),
				slog.Group("http", "authorization", "Bearer s3cr3t-8", "status", 200),
			)
			log.With("refreshToken", "s3cr3t-9").Debug("child logger")
			out := buf.String()
			if strings.Contains(out, "s3cr3t") {
				t.Fatalf("secret leaked into log output:\n%s", out)
			}
			for _, want := range []string{"acme-src", Redacted, "200", "child logger"} {
				if !strings.Contains(out, want) {
					t.Errorf("log output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestNewLoggerLevelAndFormat(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	lvl, err := ParseLevel("WARN")
	if err != nil {
		t.Fatal(err)
	}
	log, err := NewLogger(&buf, lvl, "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Fatalf("unexpected output: %s", out)
	}
	if _, err := NewLogger(&buf, lvl, "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("want unknown-format error, got %v", err)
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Fatal("want error for unknown level")
	}
}
