package orgsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/telemetry"
	"github.com/orgsync/orgsync/services/gcsim"
)

// demoUsers are the demo fixture's reference users.
var demoUsers = []string{"john.smith@acme.example", "jane.doe@acme.example"}

func newDevCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev [flags]",
		Short: "run everything in one process: embedded NATS, gcsim with the demo orgs (or --config), all services",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	var o devOptions
	fs.StringVar(&o.store, "store", defaultStore, "directory of JetStream's store, the provisioner's bbolt file and the NATS credentials (kept across restarts)")
	fs.StringVar(&o.config, "config", "", "org registry YAML of real orgs (credentials for the auth service; mode 0600); default: gcsim with the demo orgs")
	fs.StringVar(&o.crm, "crm", "", "the integrator's CRM adapters YAML (TARGET: {baseURL, apiKey, integrationName}; mode 0600); default with gcsim: its fake CRM")
	fs.StringVar(&o.gcsimAddr, "gcsim-addr", "127.0.0.1:8089", "gcsim listen address (without --config)")
	fs.IntVar(&o.natsPort, "nats-port", 4222, "client port of the embedded NATS server (0: a free port)")
	fs.StringVar(&o.httpAddr, "http", envOr("ORGSYNC_HTTP", "127.0.0.1:8080"), "address of /healthz, /readyz and /metrics of every service; empty disables (env ORGSYNC_HTTP)")
	logLevel := choice(cmd, "log-level", "info", "service log level", false, "debug", "info", "warn", "error")
	traceExp := choice(cmd, "trace", envOr("ORGSYNC_TRACE", telemetry.ExporterOff), "trace exporter (env ORGSYNC_TRACE)", false, telemetry.ExporterOff, telemetry.ExporterStdout, telemetry.ExporterOTLP)
	fs.StringVar(&o.otlp, "otlp-endpoint", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "OTLP/HTTP endpoint for --trace=otlp")
	_ = cmd.MarkFlagDirname("store")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	_ = cmd.MarkFlagFilename("crm", "yaml", "yml")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o.logLevel, o.trace = logLevel.value, traceExp.value
		return runDev(cmd.Context(), o, a.io)
	}
	return cmd
}

type devOptions struct {
	store, config, crm, gcsimAddr, httpAddr, logLevel, trace, otlp string
	natsPort                                                       int
}

func runDev(ctx context.Context, o devOptions, out IO) error {
	level, err := telemetry.ParseLevel(o.logLevel)
	if err != nil {
		return usageErr("--log-level: %v", err)
	}
	logger, err := telemetry.NewLogger(out.Err, level, "text")
	if err != nil {
		return err
	}
	if o.trace != telemetry.ExporterOff { // Main installed the "off" provider already
		shutdown, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "orgsync-dev", Exporter: o.trace, OTLPEndpoint: o.otlp})
		if err != nil {
			return usageErr("--trace: %v", err)
		}
		defer shutdown(context.Background())
	}

	cfg := DevConfig{StoreDir: o.store, GcsimAddr: o.gcsimAddr, NATSPort: o.natsPort, HTTPAddr: o.httpAddr, Logger: logger, Sim: demoSimConfig()}
	if o.crm != "" {
		cfg.ServiceArgs = map[string][]string{"integrator": {"--crm", o.crm}}
	}
	if o.config != "" {
		if cfg.Orgs, err = orgconfig.Load(o.config); err != nil {
			return usageErr("--config: %v", err)
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	d, err := StartDev(startCtx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer d.Close()
	orgsFile := filepath.Join(o.store, "orgs.yaml")
	if err := d.WriteOrgsFile(orgsFile); err != nil {
		return fmt.Errorf("write %s: %w", orgsFile, err)
	}
	fmt.Fprintf(out.Out, "orgsync dev is running (Ctrl-C stops it)\n")
	fmt.Fprintf(out.Out, "  NATS:      %s  (JetStream store %s, encrypted)\n", d.NATSURL, filepath.Join(o.store, "jetstream"))
	fmt.Fprintf(out.Out, "  creds:     %s  (one nkey per service; the CLI's is %s)\n", d.CredsDir, natsx.CredsFile(d.CredsDir, natsx.RoleCLI))
	if d.Sim != nil {
		fmt.Fprintf(out.Out, "  gcsim:     %s  (demo orgs; admin under /_sim/)\n", d.SimURL)
	}
	fmt.Fprintf(out.Out, "  orgs:      %s  (written to %s, without credentials)\n", strings.Join(d.Orgs.Keys(), ", "), orgsFile)
	fmt.Fprintf(out.Out, "  services:  %s\n", strings.Join(d.Running(), ", "))
	if d.HTTPAddr != "" {
		fmt.Fprintf(out.Out, "  http:      http://%s/metrics, /healthz, /readyz  (every service)\n", d.HTTPAddr)
	}
	if d.Sim != nil {
		creds := ""
		if filepath.Clean(o.store) != defaultStore { // the CLI finds the default store's by itself
			creds = " --creds " + natsx.CredsFile(d.CredsDir, natsx.RoleCLI)
		}
		fmt.Fprintf(out.Out, "\nIn another shell:\n  go run ./services/orgsync/cmd/orgsync clone --nats %s%s --source source --user %s --target target1,target2,target3 --wait\n",
			d.NATSURL, creds, strings.Join(demoUsers, " --user "))
	}
	<-ctx.Done()
	fmt.Fprintln(out.Err, "orgsync dev: stopping")
	return nil
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

// newGcsimCmd is `orgsync gcsim`: the simulator on its own, as the gcsim
// command runs it (the bench starts S4's gcsim this way, in its own
// process). gcsim parses its own flags.
func newGcsimCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:                "gcsim [flags]",
		Short:              "run the Genesys Cloud simulator alone (the one dev embeds); orgsync gcsim --help lists its flags",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := gcsim.Run(cmd.Context(), cmd.CommandPath(), args, a.io.Out, a.io.Err)
			if errors.Is(err, gcsim.ErrUsage) {
				return &exitError{code: ExitUsage, err: err}
			}
			return err
		},
	}
}
