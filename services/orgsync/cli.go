// Package orgsync is the orgsync command line: submit clone requests and
// follow them (clone, plan, status, watch), and run the whole system in one
// process (dev, demo).
package orgsync

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/telemetry"
)

// Exit statuses of Main.
const (
	ExitOK     = 0
	ExitFailed = 1 // the request or a target failed, or an operation failed
	ExitUsage  = 2 // bad flags or arguments
)

// IO is where a command writes: Out for results (summary, JSON), Err for
// progress and diagnostics.
type IO struct {
	Out, Err io.Writer
}

type subcommand struct {
	name, summary string
	run           func(ctx context.Context, args []string, io IO) int
}

func subcommands() []subcommand {
	return []subcommand{
		{"clone", "publish a clone request (--wait: follow it with progress bars and a summary)", runClone},
		{"plan", "dry run: show what a clone would create or change in each target; nothing is written", runPlan},
		{"apply", applySummary, runApply}, {"diff", diffSummary, runDiff},
		{"get", getSummary, runGet}, {"describe", describeSummary, runDescribe}, {"delete", deleteSummary, runDelete},
		{"status", "show the job report of a request: orgsync status REQUEST_ID", runStatus},
		{"watch", "print events live (--org to follow one org)", runWatch},
		{"reconcile", reconcileSummary, runReconcile}, {"drift", driftSummary, runDrift},
		{"audit", auditSummary, runAudit},
		{"integrations", integrationsSummary, runIntegrations},
		{"replay", replaySummary, runReplay},
		{"failed", failedSummary, runFailed},
		{"dev", "run everything in one process: embedded NATS, gcsim with the demo orgs (or --config), all services", runDev},
		{"nats-creds", natsCredsSummary, runNATSCreds},
		{"gcsim", "run the Genesys Cloud simulator alone (the one `dev` embeds): orgsync gcsim --help", runGcsim},
		{"bench", "benchmark scenarios against gcsim: calls per user, rate efficiency, overhead, memory (table + JSON)", runBench},
		{"demo", "start the dev environment, clone the demo users into 3 orgs, then again (changing nothing)", runDemo},
	}
}

// Main runs the orgsync command line and returns the process exit status.
func Main(ctx context.Context, args []string, out IO) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A NATS permission violation cancels the command (see connect) and is
	// what the user reads last, naming the refused subject.
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil)
	ctx = context.WithValue(ctx, refuseKey{}, refuse)
	if shutdown := setupTracing(ctx, out); shutdown != nil {
		defer shutdown()
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(out.Err)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range subcommands() {
		if c.name == args[0] {
			code := c.run(ctx, args[1:], out)
			if perr := natsx.Refused(ctx); perr != nil {
				fmt.Fprintf(out.Err, "orgsync %s: %v\n", c.name, perr)
				code = max(code, ExitFailed)
			}
			return code
		}
	}
	fmt.Fprintf(out.Err, "orgsync: unknown command %q\n\n", args[0])
	usage(out.Err)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "orgsync — clone Genesys Cloud user configurations across organizations")
	fmt.Fprintln(w, "\nUsage: orgsync <command> [flags]\n\nCommands:")
	for _, c := range subcommands() {
		fmt.Fprintf(w, "  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `orgsync <command> --help` for the flags of a command.")
}

// newFlagSet returns a flag set that reports errors to io.Err.
func newFlagSet(name, args string, out IO) *flag.FlagSet {
	fs := flag.NewFlagSet("orgsync "+name, flag.ContinueOnError)
	fs.SetOutput(out.Err)
	fs.Usage = func() {
		for _, c := range subcommands() {
			if c.name == name {
				fmt.Fprintf(out.Err, "orgsync %s — %s\n\n", name, c.summary)
			}
		}
		fmt.Fprintf(out.Err, "Usage: orgsync %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; ok is false when the command must stop with code.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, false
		}
		return ExitUsage, false
	}
	return 0, true
}

// parseInterspersed parses args allowing flags after positional arguments
// ("orgsync status ID --nats URL"), returning the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) (positional []string, code int, ok bool) {
	for {
		if code, ok := parseFlags(fs, args); !ok {
			return nil, code, false
		}
		if fs.NArg() == 0 {
			return positional, 0, true
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// validOutput reports whether an --output value is "text" or "json", and
// otherwise tells the user which command refused it.
func validOutput(command, output string, out IO) bool {
	if output == "text" || output == "json" {
		return true
	}
	fmt.Fprintf(out.Err, "orgsync %s: --output must be text or json, got %q\n", command, output)
	return false
}

// natsOptions are where and as whom a CLI command connects.
type natsOptions struct {
	url  string
	auth natsx.ClientAuth
}

// natsFlag registers --nats and the NATS credential and TLS flags.
func natsFlag(fs *flag.FlagSet) *natsOptions {
	def := os.Getenv("ORGSYNC_NATS_URL")
	if def == "" {
		def = nats.DefaultURL
	}
	var o natsOptions
	fs.StringVar(&o.url, "nats", def, "NATS server URL(s) of the orgsync deployment, e.g. the one `orgsync dev` prints (env ORGSYNC_NATS_URL)")
	o.auth.Register(fs)
	return &o
}

// defaultStore is `orgsync dev`'s store; the CLI finds its credentials there.
var defaultStore = filepath.Join(".orgsync", "dev")

// cliCreds returns auth, or, when it names no credential, the CLI's nkey
// seed of `orgsync dev`'s default store if there is one.
func cliCreds(auth natsx.ClientAuth) natsx.ClientAuth {
	if auth.Configured() {
		return auth
	}
	if p := natsx.CredsFile(filepath.Join(defaultStore, "nats"), natsx.RoleCLI); fileExists(p) {
		auth.Creds = p
	}
	return auth
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

type refuseKey struct{}

// connect opens NATS and JetStream for a CLI command, as the CLI's NATS
// user. A permission violation cancels ctx's command (Main reports it).
func connect(ctx context.Context, o natsOptions) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := natsx.Connect(o.url, natsx.RoleCLI, cliCreds(o.auth), slog.New(slog.DiscardHandler),
		nats.Name("orgsync-cli"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, err
	}
	if refuse, ok := ctx.Value(refuseKey{}).(context.CancelCauseFunc); ok {
		refused, _ := natsx.Guard(context.Background(), nc, nil)
		context.AfterFunc(refused, func() {
			if perr := natsx.Refused(refused); perr != nil {
				refuse(perr)
			}
		})
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream on %s: %w", natsx.RedactURL(o.url), err)
	}
	return nc, js, nil
}

func unmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

func fail(out IO, format string, args ...any) int {
	fmt.Fprintf(out.Err, "orgsync: "+format+"\n", args...)
	return ExitFailed
}

// setupTracing installs a tracer provider (exporter from ORGSYNC_TRACE,
// default off) unless the host process has one already (tests), so the CLI's
// "orgsync clone" span has a real trace id that the services continue.
func setupTracing(ctx context.Context, out IO) func() {
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		return nil
	}
	shutdown, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "orgsync-cli",
		Exporter: envOr("ORGSYNC_TRACE", telemetry.ExporterOff), OTLPEndpoint: os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")})
	if err != nil {
		fmt.Fprintf(out.Err, "orgsync: tracing disabled: %v\n", err)
		return nil
	}
	return func() { _ = shutdown(context.Background()) }
}
