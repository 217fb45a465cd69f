package orgsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/telemetry"
	"github.com/orgsync/orgsync/services/gcsim"
)

// demoUsers are the demo fixture's reference users.
var demoUsers = []string{"john.smith@acme.example", "jane.doe@acme.example"}

func runDev(ctx context.Context, args []string, out IO) int {
	fs := newFlagSet("dev", "[flags]", out)
	store := fs.String("store", defaultStore, "directory of JetStream's store, the provisioner's bbolt file and the NATS credentials (kept across restarts)")
	config := fs.String("config", "", "org registry YAML of real orgs (credentials for the auth service; mode 0600); default: gcsim with the demo orgs")
	crm := fs.String("crm", "", "the integrator's CRM adapters YAML (TARGET: {baseURL, apiKey, integrationName}; mode 0600); default with gcsim: its fake CRM")
	gcsimAddr := fs.String("gcsim-addr", "127.0.0.1:8089", "gcsim listen address (without --config)")
	natsPort := fs.Int("nats-port", 4222, "client port of the embedded NATS server (0: a free port)")
	logLevel := fs.String("log-level", "info", "service log level: debug, info, warn, error")
	traceExp := fs.String("trace", envOr("ORGSYNC_TRACE", telemetry.ExporterOff), "trace exporter: off, stdout or otlp (env ORGSYNC_TRACE)")
	otlp := fs.String("otlp-endpoint", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "OTLP/HTTP endpoint for --trace=otlp")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	level, err := telemetry.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(out.Err, "orgsync dev: %v\n", err)
		return ExitUsage
	}
	logger, err := telemetry.NewLogger(out.Err, level, "text")
	if err != nil {
		return fail(out, "%v", err)
	}
	if *traceExp != telemetry.ExporterOff { // Main installed the "off" provider already
		shutdown, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "orgsync-dev", Exporter: *traceExp, OTLPEndpoint: *otlp})
		if err != nil {
			fmt.Fprintf(out.Err, "orgsync dev: %v\n", err)
			return ExitUsage
		}
		defer shutdown(context.Background())
	}

	cfg := DevConfig{StoreDir: *store, GcsimAddr: *gcsimAddr, NATSPort: *natsPort, Logger: logger, Sim: demoSimConfig()}
	if *crm != "" {
		cfg.ServiceArgs = map[string][]string{"integrator": {"--crm", *crm}}
	}
	if *config != "" {
		if cfg.Orgs, err = orgconfig.Load(*config); err != nil {
			return fail(out, "%v", err)
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	d, err := StartDev(startCtx, cfg)
	cancel()
	if err != nil {
		return fail(out, "%v", err)
	}
	defer d.Close()
	orgsFile := filepath.Join(*store, "orgs.yaml")
	if err := d.WriteOrgsFile(orgsFile); err != nil {
		return fail(out, "write %s: %v", orgsFile, err)
	}
	fmt.Fprintf(out.Out, "orgsync dev is running (Ctrl-C stops it)\n")
	fmt.Fprintf(out.Out, "  NATS:      %s  (JetStream store %s, encrypted)\n", d.NATSURL, filepath.Join(*store, "jetstream"))
	fmt.Fprintf(out.Out, "  creds:     %s  (one nkey per service; the CLI's is %s)\n", d.CredsDir, natsx.CredsFile(d.CredsDir, natsx.RoleCLI))
	if d.Sim != nil {
		fmt.Fprintf(out.Out, "  gcsim:     %s  (demo orgs; admin under /_sim/)\n", d.SimURL)
	}
	fmt.Fprintf(out.Out, "  orgs:      %s  (written to %s, without credentials)\n", strings.Join(d.Orgs.Keys(), ", "), orgsFile)
	fmt.Fprintf(out.Out, "  services:  %s\n", strings.Join(d.Running(), ", "))
	if d.Sim != nil {
		creds := ""
		if filepath.Clean(*store) != defaultStore { // the CLI finds the default store's by itself
			creds = " --creds " + natsx.CredsFile(d.CredsDir, natsx.RoleCLI)
		}
		fmt.Fprintf(out.Out, "\nIn another shell:\n  go run ./services/orgsync/cmd/orgsync clone --nats %s%s --source source --user %s --target target1,target2,target3 --wait\n",
			d.NATSURL, creds, strings.Join(demoUsers, " --user "))
	}
	<-ctx.Done()
	fmt.Fprintln(out.Err, "orgsync dev: stopping")
	return ExitOK
}

// demoSimConfig is gcsim as `orgsync dev` and the demo run it: its defaults,
// the real per-token rate limit and eventual-consistency windows.
func demoSimConfig() gcsim.Config {
	return gcsim.Config{}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// runGcsim is `orgsync gcsim`: the simulator on its own, as the gcsim
// command runs it (the bench starts S4's gcsim this way, in its own process).
func runGcsim(ctx context.Context, args []string, out IO) int {
	if err := gcsim.Main(ctx, args, out.Err); err != nil {
		return fail(out, "gcsim: %v", err)
	}
	return ExitOK
}
