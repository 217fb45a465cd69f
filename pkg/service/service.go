// Package service is the runtime every orgsync service binary shares: common
// flags, logging, tracing, the NATS connection, the org registry, and the
// health/readiness endpoints. A service package exports a Command; its
// cmd/<name>/main.go is one line (service.Main), and `orgsync dev` builds
// the same Commands in one process.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/orgsync/orgsync/pkg/authclient"
	"github.com/orgsync/orgsync/pkg/deadletter"
	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/telemetry"
)

// Runnable is a built service.
type Runnable interface {
	// Run binds the service's consumers and blocks until ctx is done. It
	// returns nil on a clean shutdown.
	Run(ctx context.Context) error
	// Ready reports whether the service is serving (consumers bound).
	Ready() bool
}

// Command describes one service: its name, what it does, and its own flags.
type Command struct {
	// Name of the binary and of the service ("provisioner").
	Name string
	// Summary is one sentence shown by --help.
	Summary string
	// Flags registers the service's own flags in fs and returns the
	// function that builds the service once flags are parsed. Nil: no flags
	// of its own.
	Flags func(fs *flag.FlagSet) Builder
	// RateShare is the part of each org's API budget the service takes by
	// default (--rate-share overrides it): 1 for the provisioner, which
	// owns its target orgs' budgets; less for services that read orgs
	// another service writes. 0 means 1.
	RateShare float64
}

// BudgetShare is the share of each org's budget cmd takes given the
// --rate-share flag (0: the command's default).
func (cmd Command) BudgetShare(flag float64) (float64, error) {
	share := flag
	if share == 0 {
		share = cmd.RateShare
	}
	if share == 0 {
		share = 1
	}
	if share < 0 || share > 1 {
		return 0, fmt.Errorf("--rate-share must be in (0, 1], got %g", flag)
	}
	return share, nil
}

// Builder builds a service from the shared environment.
type Builder func(env *Env) (Runnable, error)

// Env is what every service gets from the runtime.
type Env struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Logger   *slog.Logger
	Topology natsx.Topology
	// Orgs is the org configuration (secrets only when the process has them).
	Orgs *orgconfig.Config
	// Clients are Genesys clients by org key, authenticated through the auth
	// service (tokens cached in KV) unless built otherwise.
	Clients *orgs.Registry
	Events  *events.Emitter
}

// Flags are the flags every service binary shares.
type Flags struct {
	NATSURL      string
	OrgsFile     string
	HTTPAddr     string
	LogLevel     string
	LogFormat    string
	Trace        string
	OTLPEndpoint string
	Replicas     int
	RateShare    float64
	// Auth: credentials and TLS of the NATS connection.
	Auth natsx.ClientAuth
}

// Register adds the shared flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.NATSURL, "nats", envOr("ORGSYNC_NATS_URL", nats.DefaultURL), "NATS server URL(s), comma-separated (env ORGSYNC_NATS_URL)")
	fs.StringVar(&f.OrgsFile, "orgs", envOr("ORGSYNC_ORGS", "orgs.yaml"), "org configuration file: org keys, regions, API base URLs (env ORGSYNC_ORGS); credentials only where needed (auth service), file must be mode 0600 when it holds secrets")
	fs.StringVar(&f.HTTPAddr, "http", envOr("ORGSYNC_HTTP", ":8080"), "address of /healthz, /readyz and /metrics; empty disables (env ORGSYNC_HTTP)")
	fs.StringVar(&f.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.Trace, "trace", envOr("ORGSYNC_TRACE", "off"), "trace exporter: off, stdout or otlp (env ORGSYNC_TRACE)")
	fs.StringVar(&f.OTLPEndpoint, "otlp-endpoint", envOr("OTEL_EXPORTER_OTLP_ENDPOINT", ""), "OTLP/HTTP endpoint for --trace=otlp")
	fs.IntVar(&f.Replicas, "replicas", 1, "replicas of every stream and KV bucket created at start-up: 1 (single server) or 3 (cluster)")
	f.Auth.Register(fs)
	fs.Float64Var(&f.RateShare, "rate-share", 0, "part (0,1] of each org's API budget (orgs file rateLimit/burst) this process spends; 0: the service's default (provisioner 1, services that only read 0.5 or less)")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// FlagSet returns the complete flag set of a command (shared + own flags),
// as its binary parses it, plus the builder. Used by Main and by tests that
// check deployment manifests only use flags that exist.
func FlagSet(cmd Command, out io.Writer) (*flag.FlagSet, *Flags, Builder) {
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	fs.SetOutput(out)
	var shared Flags
	shared.Register(fs)
	var build Builder
	if cmd.Flags != nil {
		build = cmd.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "%s — %s\n\nUsage: %s [flags]\n\nFlags:\n", cmd.Name, cmd.Summary, cmd.Name)
		fs.PrintDefaults()
	}
	return fs, &shared, build
}

// Main is the whole main() of a service binary: parse flags, set up logging,
// tracing and NATS, build the service, serve health endpoints, run until
// SIGINT/SIGTERM. It exits the process with a non-zero status on failure.
func Main(cmd Command) {
	if err := Run(context.Background(), cmd, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd.Name, err)
		os.Exit(1)
	}
}

// Run is Main without the process exit, for tests.
func Run(ctx context.Context, cmd Command, args []string, stderr io.Writer) error {
	fs, flags, build := FlagSet(cmd, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if build == nil {
		return fmt.Errorf("service %s has no builder", cmd.Name)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	level, err := telemetry.ParseLevel(flags.LogLevel)
	if err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(stderr, level, flags.LogFormat)
	if err != nil {
		return err
	}
	logger = logger.With("service", cmd.Name)
	shutdownTracing, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "orgsync-" + cmd.Name, Exporter: flags.Trace, OTLPEndpoint: flags.OTLPEndpoint})
	if err != nil {
		return err
	}
	defer shutdownTracing(context.Background())

	if flags.RateShare, err = cmd.BudgetShare(flags.RateShare); err != nil {
		return err
	}
	env, closeEnv, err := Connect(ctx, cmd.Name, flags, logger)
	if err != nil {
		return err
	}
	defer closeEnv()
	svc, err := build(env)
	if err != nil {
		return fmt.Errorf("build %s: %w", cmd.Name, err)
	}
	if flags.HTTPAddr != "" {
		stopHTTP, err := ServeHealth(flags.HTTPAddr, env.NC, svc, logger)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
	logger.Info("starting", "nats", natsx.RedactURL(flags.NATSURL), "orgs", env.Orgs.Keys())
	defer StartDeadLetterCapture(ctx, env)()
	err = svc.Run(ctx)
	logger.Info("stopped", "err", err)
	return err
}

// Connect builds the shared environment: NATS connection (reconnecting
// forever: the services must ride through server restarts and leader
// changes), JetStream, streams, org registry with auth-service tokens.
func Connect(ctx context.Context, name string, flags *Flags, logger *slog.Logger) (*Env, func(), error) {
	cfg, err := orgconfig.Load(flags.OrgsFile)
	if err != nil {
		return nil, nil, err
	}
	nc, err := ConnectNATS(flags.NATSURL, name, flags.Auth, logger)
	if err != nil {
		return nil, nil, err
	}
	env, err := NewEnv(ctx, nc, cfg.WithRateShare(flags.RateShare), natsx.Topology{Replicas: flags.Replicas}, logger)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return env, func() { _ = nc.Drain() }, nil
}

// ConnectNATS is the one NATS connection of a service process: its own
// identity (role = service name) and TLS from auth, reconnecting forever (the
// services must ride through server restarts and leader changes).
func ConnectNATS(url, name string, auth natsx.ClientAuth, logger *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	return natsx.Connect(url, name, auth, logger, append([]nats.Option{
		nats.Name("orgsync-" + name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
	}, opts...)...)
}

// NewEnv builds the environment on an existing connection: streams and KV
// ensured, Genesys clients taking tokens from the auth service via the KV
// cache. `orgsync dev` and tests use it directly.
func NewEnv(ctx context.Context, nc *nats.Conn, cfg *orgconfig.Config, topo natsx.Topology, logger *slog.Logger, opts ...orgs.Option) (*Env, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := natsx.EnsureStreams(ctx, js, topo); err != nil {
		return nil, err
	}
	// The advisory stream must exist before any message can fail, or its
	// dead-letter advisory is lost.
	if _, err := deadletter.Ensure(ctx, js, topo); err != nil {
		return nil, err
	}
	kv := natsx.NewLazyTokenKV(js) // the auth service creates it, maybe after us
	tokenSources := func(org string) oauth2.TokenSource { return authclient.TokenSource(nc, kv, org) }
	metrics.ObserveDeliveries()
	reg := orgs.NewRegistry(cfg.OrgConfigs(), append([]orgs.Option{orgs.WithTokenSources(tokenSources), orgs.WithObserver(metrics.GenesysCall)}, opts...)...)
	metrics.WatchLimiters(reg)
	return &Env{NC: nc, JS: js, Logger: logger, Topology: topo, Orgs: cfg, Clients: reg, Events: events.New(js)}, nil
}

// ServeHealth serves /healthz (the process is up), /readyz (connected to NATS
// and the service is ready) and /metrics on addr.
func ServeHealth(addr string, nc *nats.Conn, svc Runnable, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health endpoint %s: %w", addr, err)
	}
	srv := &http.Server{Handler: HealthHandler(nc, svc), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("health endpoint", "err", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}

// HealthHandler answers /healthz, /readyz and /metrics (Prometheus text
// format, pkg/metrics).
func HealthHandler(nc *nats.Conn, svc Runnable) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var problems []string
		if nc == nil || !nc.IsConnected() {
			problems = append(problems, "not connected to NATS")
		}
		if !svc.Ready() {
			problems = append(problems, "consumers not bound")
		}
		if len(problems) > 0 {
			sort.Strings(problems)
			http.Error(w, strings.Join(problems, "; "), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}

// StartDeadLetterCapture runs a dead-letter capturer (pkg/deadletter) in the
// background until ctx is done; every service process runs one (they share
// a durable consumer, recording is idempotent). The returned function waits
// for it to stop. Run calls it; `orgsync dev` calls it once for its process.
func StartDeadLetterCapture(ctx context.Context, env *Env) (wait func()) {
	logger := env.Logger
	if logger == nil {
		logger = slog.Default()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := deadletter.Capture(ctx, env.JS, deadletter.Options{Topology: env.Topology, Logger: logger}); err != nil {
			logger.Error("dead-letter capture stopped", "err", err)
		}
	}()
	return func() { <-done }
}
