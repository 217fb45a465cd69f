package auth

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/pkg/telemetry"
)

// Main runs the auth service command line until ctx ends. --help prints
// usage and returns nil.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats", nats.DefaultURL, "NATS server URL (JetStream enabled); the token cache lives in its KV bucket orgsync-tokens")
	configPath := fs.String("config", "orgs.yaml", "org registry YAML with each org's region/URLs and client credentials; must be mode 0600 (chmod 600) when it contains secrets.\nCredentials may instead come from ORGSYNC_ORG_<KEY>_CLIENT_ID / ORGSYNC_ORG_<KEY>_CLIENT_SECRET (key upper-cased, '-' -> '_')")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error (secrets are redacted at every level)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	traceExporter := fs.String("trace-exporter", telemetry.ExporterOff, "where spans go: off, stdout or otlp")
	var natsAuth natsx.ClientAuth
	natsAuth.Register(fs)
	otlpEndpoint := fs.String("otlp-endpoint", "", "OTLP/HTTP collector host:port for --trace-exporter=otlp (default: OTEL_EXPORTER_OTLP_ENDPOINT or localhost:4318)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: auth [flags]

The orgsync auth service: the only process holding Genesys Cloud client
credentials. It answers token requests on orgsync.auth.token.<org> (NATS micro
service "orgsync-auth"), obtains tokens with the OAuth client-credentials grant
from each org's login host, and caches them in the KV bucket orgsync-tokens
until expires_in minus 5 minutes. Secrets and tokens are never logged.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v (see --help)", fs.Args())
	}

	level, err := telemetry.ParseLevel(*logLevel)
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(stderr, level, *logFormat)
	if err != nil {
		return err
	}
	shutdown, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: ServiceName, Exporter: *traceExporter, OTLPEndpoint: *otlpEndpoint})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}()

	orgs, err := orgconfig.Load(*configPath)
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(*natsURL, natsx.RoleAuth, natsAuth, log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	svc, err := New(Config{Orgs: orgs, NC: nc, Logger: log})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
