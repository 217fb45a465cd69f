package orgsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/integrator"
	"github.com/orgsync/orgsync/services/reconciler"
)

// DevConfig configures the one-process environment of `orgsync dev`,
// `orgsync demo` and the end-to-end tests.
type DevConfig struct {
	// StoreDir holds JetStream's store and the provisioner's bbolt file
	// (required). Reusing it keeps streams, KV and ID translation across
	// restarts.
	StoreDir string
	// Orgs is the org registry; nil means gcsim with Fixture, with one org
	// key per fixture org derived from its first client id
	// ("target1-client" → "target1").
	Orgs *orgconfig.Config
	// Fixture for gcsim; nil means gcsim.DemoFixture(). Ignored with Orgs.
	Fixture *gcsim.Fixture
	// EditOrgs, when set, may change the org registry derived from the
	// fixture before it is validated (tests: an org without credentials).
	// simURL is gcsim's base URL. Ignored with Orgs.
	EditOrgs func(simURL string, orgs map[string]orgconfig.Org)
	// Sim configures gcsim (latency, rate limit, eventual consistency).
	Sim gcsim.Config
	// SimURL, when set, is a gcsim already running elsewhere (another
	// process) with Fixture loaded: dev derives the org registry from
	// Fixture and starts no gcsim of its own (Dev.Sim stays nil; Sim and
	// GcsimAddr are ignored).
	SimURL string
	// GcsimAddr is gcsim's listen address; default "127.0.0.1:0" (a free port).
	GcsimAddr string
	// NATSPort: the embedded server's client port; 0 picks a free one.
	NATSPort int
	// HTTPAddr serves /metrics, /healthz and /readyz for every service at
	// once ("" none; port 0 picks a free one: Dev.HTTPAddr says which).
	HTTPAddr string
	// Logger of the services; default discards everything.
	Logger *slog.Logger
	// Commands are the services to run; default ServiceCommands().
	Commands []service.Command
	// ServiceArgs are extra flags per service name, appended to the dev
	// defaults (e.g. "provisioner": {"--own", "target1"}).
	ServiceArgs map[string][]string
	// RegistryOptions are passed to every service's org registry (tests:
	// orgs.WithTransport with the spec-validating transport).
	RegistryOptions []orgs.Option
	// ReadyTimeout bounds the wait for every service to be ready (default 30s).
	ReadyTimeout time.Duration
}

func (c DevConfig) withDefaults() DevConfig {
	if c.GcsimAddr == "" {
		c.GcsimAddr = "127.0.0.1:0"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Commands == nil {
		c.Commands = ServiceCommands()
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	return c
}

// Validate reports the first invalid field of c (after defaults).
func (c DevConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.StoreDir == "":
		return errors.New("dev: StoreDir is required")
	case c.NATSPort < 0 || c.NATSPort > 65535:
		return fmt.Errorf("dev: NATSPort must be 0..65535, got %d", c.NATSPort)
	case c.ReadyTimeout < 0:
		return fmt.Errorf("dev: ReadyTimeout must be >= 0, got %v", c.ReadyTimeout)
	}
	seen := map[string]bool{}
	for _, cmd := range c.Commands {
		if seen[cmd.Name] {
			return fmt.Errorf("dev: service %s listed twice", cmd.Name)
		}
		seen[cmd.Name] = true
	}
	return nil
}

// Dev is a running one-process orgsync: embedded nats-server, gcsim (unless
// real orgs are configured) and every service, each on its own NATS
// connection as if it were its own process.
type Dev struct {
	cfg DevConfig
	// Server is the embedded nats-server; NATSURL its client URL.
	Server  *server.Server
	NATSURL string
	// CredsDir holds the nkey seed of every NATS identity (natsx.Roles),
	// mode 0600; the server accepts those identities only.
	CredsDir string
	// Sim is gcsim (nil with real orgs); SimURL its base URL.
	Sim    *gcsim.Sim
	SimURL string
	// Orgs is the org registry the services use (with credentials).
	Orgs *orgconfig.Config
	// OrgIDs maps org keys to gcsim org ids (empty with real orgs).
	OrgIDs map[string]string
	// HTTPAddr is where /metrics, /healthz and /readyz listen ("" none).
	HTTPAddr string
	stopHTTP func()

	// crmFile is the integrator's CRM adapters file for gcsim's fake CRM
	// ("" with real orgs: DevConfig.ServiceArgs may name one).
	crmFile string

	stopSim context.CancelFunc
	simDone chan error

	// The process's dead-letter capturer (service.Run runs one per service
	// process; here the services share one process, so one is enough).
	stopCapture func()
	captureNC   *nats.Conn

	mu       sync.Mutex
	services map[string]*runningService
}

type runningService struct {
	name   string
	svc    service.Runnable
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	// refused is cancelled with the first permission violation of nc.
	refused context.Context
}

// StartDev starts the environment and returns once every service is ready.
// Close stops it. ctx bounds start-up only.
func StartDev(ctx context.Context, cfg DevConfig) (d *Dev, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: store dir: %w", err)
	}
	d = &Dev{cfg: cfg, services: map[string]*runningService{}, OrgIDs: map[string]string{}}
	partial := d // the error returns below reset d to nil
	defer func() {
		if err != nil {
			partial.Close()
		}
	}()

	port := cfg.NATSPort
	if port == 0 {
		port = -1
	}
	// Secure by default, as deployed: one nkey user per service and the
	// CLI with its permissions, JetStream encrypted at rest.
	d.CredsDir = filepath.Join(cfg.StoreDir, "nats")
	users, err := natsx.EnsureCreds(d.CredsDir)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	jsKey, err := natsx.EnsureKeyFile(filepath.Join(d.CredsDir, JetStreamKeyFile))
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	d.Server, err = natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: filepath.Join(cfg.StoreDir, "jetstream"), Port: port, ServerName: "orgsync-dev",
		Users: users, JetStreamKey: jsKey})
	if err != nil {
		return nil, err
	}
	d.NATSURL = d.Server.ClientURL()

	d.Orgs = cfg.Orgs
	if d.Orgs == nil {
		if err := d.startSim(cfg); err != nil {
			return nil, err
		}
		// gcsim holds its fixture and the registry is derived from it:
		// the environment need not keep its users (10,000 of them in the
		// bench's S6 held 14 MB to the end).
		d.cfg.Fixture = nil
	}
	for _, cmd := range cfg.Commands {
		if err := d.StartService(ctx, cmd.Name); err != nil {
			return nil, err
		}
	}
	if err := d.startDeadLetterCapture(); err != nil {
		return nil, err
	}
	if cfg.HTTPAddr != "" {
		if err := d.serveHTTP(cfg.HTTPAddr); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// serveHTTP serves the endpoints a standalone service binary serves
// (service.HealthHandler), for the whole process: /readyz is ready when
// every service is.
func (d *Dev) serveHTTP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("dev: --http %s: %w", addr, err)
	}
	srv := &http.Server{Handler: service.HealthHandler(d.captureNC, devReadiness{d}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	d.HTTPAddr = ln.Addr().String()
	d.stopHTTP = func() { _ = srv.Close() }
	return nil
}

// devReadiness is every service of a Dev as one service.Runnable: ready
// when each configured service runs, is ready and is connected to NATS.
type devReadiness struct{ d *Dev }

func (r devReadiness) Run(context.Context) error { return nil }
func (r devReadiness) Ready() bool {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	for _, c := range r.d.cfg.Commands {
		rs, ok := r.d.services[c.Name]
		if !ok || !rs.svc.Ready() || !rs.nc.IsConnected() {
			return false
		}
	}
	return true
}

// startDeadLetterCapture records the dead-letter advisories of every
// service (`orgsync failed list` reads them) on a connection of its own.
func (d *Dev) startDeadLetterCapture() error {
	// Any service identity may capture dead letters (a standalone binary
	// captures under its own); the reconciler's is the operations-facing one.
	nc, err := service.ConnectNATS(d.NATSURL, natsx.RoleReconciler, d.Creds(natsx.RoleReconciler), d.cfg.Logger, nats.Name("orgsync-dev-deadletter"))
	if err != nil {
		return fmt.Errorf("dev: connect the dead-letter capture to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("dev: JetStream for the dead-letter capture: %w", err)
	}
	d.captureNC = nc
	ctx, cancel := context.WithCancel(context.Background())
	wait := service.StartDeadLetterCapture(ctx, &service.Env{NC: nc, JS: js, Logger: d.cfg.Logger.With("service", "deadletter")})
	d.stopCapture = func() {
		cancel()
		wait()
		nc.Close()
	}
	return nil
}

// startSim starts gcsim with the fixture and derives the org registry.
func (d *Dev) startSim(cfg DevConfig) error {
	fx := cfg.Fixture
	if fx == nil {
		fx = gcsim.DemoFixture()
	}
	if d.SimURL = cfg.SimURL; d.SimURL == "" {
		sim, err := gcsim.New(cfg.Sim)
		if err != nil {
			return fmt.Errorf("dev: gcsim: %w", err)
		}
		if err := sim.LoadFixture(fx); err != nil {
			return fmt.Errorf("dev: gcsim fixture: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.GcsimAddr)
		if err != nil {
			return fmt.Errorf("dev: gcsim listen on %s: %w", cfg.GcsimAddr, err)
		}
		d.Sim, d.SimURL = sim, "http://"+ln.Addr().String()
		simCtx, stop := context.WithCancel(context.Background())
		d.stopSim, d.simDone = stop, make(chan error, 1)
		go func() { d.simDone <- sim.Serve(simCtx, ln) }()
	}

	entries := map[string]orgconfig.Org{}
	crm := map[string]integrator.CRMTarget{}
	for _, o := range fx.Orgs {
		if len(o.Clients) == 0 {
			continue
		}
		key := OrgKeyOf(o.Clients[0].ClientID)
		entries[key] = orgconfig.Org{
			APIBaseURL: d.SimURL, LoginBaseURL: d.SimURL,
			ClientID: o.Clients[0].ClientID, ClientSecret: o.Clients[0].ClientSecret,
			// gcsim is local: a budget above the Genesys default keeps the
			// demo quick; gcsim's own per-token limit still applies.
			RateLimit: 50, Burst: 50,
		}
		d.OrgIDs[key] = o.ID
		if o.CRMAPIKey != "" {
			crm[key] = integrator.CRMTarget{BaseURL: d.SimURL, APIKey: o.CRMAPIKey}
		}
	}
	if err := d.writeCRMFile(crm); err != nil {
		return err
	}
	for key, labels := range demoLabels {
		if o, ok := entries[key]; ok {
			o.Labels = labels
			entries[key] = o
		}
	}
	if cfg.EditOrgs != nil {
		cfg.EditOrgs(d.SimURL, entries)
	}
	var err error
	if d.Orgs, err = orgconfig.New(entries); err != nil {
		return fmt.Errorf("dev: org registry for gcsim: %w", err)
	}
	if all(demoTargets, d.Orgs.Has) {
		if d.Orgs, err = d.Orgs.WithSets(map[string][]string{"demo-targets": demoTargets}); err != nil {
			return fmt.Errorf("dev: org registry for gcsim: %w", err)
		}
	}
	return nil
}

// writeCRMFile writes the integrator's CRM adapters (gcsim's fake CRM of
// every fixture org with a crmApiKey) to the store, mode 0600.
func (d *Dev) writeCRMFile(crm map[string]integrator.CRMTarget) error {
	if len(crm) == 0 {
		return nil
	}
	b, err := yaml.Marshal(crm)
	if err != nil {
		return fmt.Errorf("dev: CRM adapters: %w", err)
	}
	path := filepath.Join(d.cfg.StoreDir, "crm.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("dev: write CRM adapters %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil { // an older file keeps its mode otherwise
		return fmt.Errorf("dev: CRM adapters %s: %w", path, err)
	}
	d.crmFile = path
	return nil
}

// OrgKeyOf derives the orgsync key of a fixture org from its client id.
func OrgKeyOf(clientID string) string { return strings.TrimSuffix(clientID, "-client") }

// command returns the configured command named name.
func (d *Dev) command(name string) (service.Command, bool) {
	for _, c := range d.cfg.Commands {
		if c.Name == name {
			return c, true
		}
	}
	return service.Command{}, false
}

// devArgs are the flags `orgsync dev` gives a service by default.
func (d *Dev) devArgs(name string) []string {
	switch name {
	case "provisioner":
		return []string{"--own", "all", "--state", filepath.Join(d.cfg.StoreDir, "provisioner.db")}
	case "integrator":
		if d.crmFile != "" {
			return []string{"--crm", d.crmFile}
		}
	case "reconciler":
		// Live changes come from gcsim's Notifications API; the signed
		// webhook needs a shared secret, so it listens (on a free loopback
		// port) only when ORGSYNC_WEBHOOK_SECRET is set.
		if os.Getenv(reconciler.EnvWebhookSecret) == "" {
			return []string{"--no-webhook", "--webhook-addr", ""}
		}
		return []string{"--webhook-addr", "127.0.0.1:0"}
	}
	return nil
}

// StartService builds the named service with the dev defaults, the
// configured ServiceArgs and extra, on its own NATS connection, runs it and
// waits until it is ready. A name already running is an error.
func (d *Dev) StartService(ctx context.Context, name string, extra ...string) error {
	cmd, ok := d.command(name)
	if !ok {
		return fmt.Errorf("dev: no service %q", name)
	}
	d.mu.Lock()
	_, running := d.services[name]
	d.mu.Unlock()
	if running {
		return fmt.Errorf("dev: service %s is already running", name)
	}
	fs, shared, build := service.FlagSet(cmd, io.Discard)
	if build == nil {
		return fmt.Errorf("dev: service %s has no builder", name)
	}
	args := append(append(d.devArgs(name), d.cfg.ServiceArgs[name]...), extra...)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("dev: flags of %s %v: %w", name, args, err)
	}
	logger := d.cfg.Logger.With("service", name)
	nc, err := service.ConnectNATS(d.NATSURL, name, d.Creds(name), logger, nats.Name("orgsync-dev-"+name))
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	refused, _ := natsx.Guard(context.Background(), nc, nil) // released when nc closes
	share, err := cmd.BudgetShare(shared.RateShare)
	if err != nil {
		return fmt.Errorf("dev: flags of %s: %w", name, err)
	}
	cfg := d.Orgs.WithRateShare(share)
	if name != "auth" {
		cfg = cfg.WithoutSecrets() // only the auth service holds credentials
	}
	env, err := service.NewEnv(ctx, nc, cfg, natsx.Topology{}, logger, d.cfg.RegistryOptions...)
	if err != nil {
		nc.Close()
		return fmt.Errorf("dev: environment of %s: %w", name, err)
	}
	svc, err := build(env)
	if err != nil {
		nc.Close()
		return fmt.Errorf("dev: build %s: %w", name, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	rs := &runningService{name: name, svc: svc, nc: nc, cancel: cancel, done: make(chan error, 1), refused: refused}
	go func() { rs.done <- svc.Run(runCtx) }()

	deadline := time.NewTimer(d.cfg.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !svc.Ready() {
		select {
		case err := <-rs.done:
			cancel()
			nc.Close()
			return fmt.Errorf("dev: %s stopped while starting: %v", name, err)
		case <-deadline.C:
			cancel()
			nc.Close()
			return fmt.Errorf("dev: %s not ready after %v", name, d.cfg.ReadyTimeout)
		case <-ctx.Done():
			cancel()
			nc.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
	d.mu.Lock()
	d.services[name] = rs
	d.mu.Unlock()
	return nil
}

// StopService stops the named service cleanly (its Run returns) and waits
// for it.
func (d *Dev) StopService(name string) error {
	d.mu.Lock()
	rs, ok := d.services[name]
	delete(d.services, name)
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("dev: service %s is not running", name)
	}
	rs.cancel()
	err := <-rs.done
	_ = rs.nc.Drain()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("dev: %s: %w", name, err)
	}
	return nil
}

// Running lists the running services, sorted.
func (d *Dev) Running() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for n := range d.services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// JetStreamKeyFile is the name of the JetStream encryption key in CredsDir.
const JetStreamKeyFile = "jetstream.key"

// Creds are the NATS credentials of role (a service name or natsx.RoleCLI).
func (d *Dev) Creds(role string) natsx.ClientAuth {
	return natsx.ClientAuth{Creds: natsx.CredsFile(d.CredsDir, role)}
}

// Connect opens a client connection to the embedded server as the CLI
// (closed by the caller).
func (d *Dev) Connect() (*nats.Conn, jetstream.JetStream, error) {
	return (&deployment{url: d.NATSURL, auth: d.Creds(natsx.RoleCLI)}).connect(context.Background())
}

// Refusals lists the permission violations the server reported to the
// running services (the first of each): none in a healthy pipeline.
func (d *Dev) Refusals() []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, rs := range d.services {
		if perr := natsx.Refused(rs.refused); perr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rs.name, perr))
		}
	}
	return errs
}

// WriteOrgsFile writes the org registry as YAML, without any credential (the
// auth service gets them in-process), so standalone service binaries can
// join with --orgs.
func (d *Dev) WriteOrgsFile(path string) error {
	b, err := yaml.Marshal(d.Orgs.WithoutSecrets().Document())
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// Close stops every service, gcsim and the server. It is safe to call twice.
func (d *Dev) Close() {
	if d.stopHTTP != nil {
		d.stopHTTP()
		d.stopHTTP = nil
	}
	running := map[string]bool{}
	for _, n := range d.Running() {
		running[n] = true
	}
	for i := len(d.cfg.Commands) - 1; i >= 0; i-- { // reverse start order: auth last
		if name := d.cfg.Commands[i].Name; running[name] {
			_ = d.StopService(name)
		}
	}
	if d.stopCapture != nil {
		d.stopCapture()
		d.stopCapture = nil
	}
	if d.stopSim != nil {
		d.stopSim()
		<-d.simDone
		d.stopSim = nil
	}
	if d.Server != nil {
		d.Server.Shutdown()
		d.Server.WaitForShutdown()
		d.Server = nil
	}
}

// demoLabels label gcsim's demo orgs, so `--target-selector tier=prod` and
// `--target demo-targets` work against `orgsync dev`.
var demoLabels = map[string]map[string]string{
	"source":  {"role": "source"},
	"target1": {"region": "emea", "tier": "prod"},
	"target2": {"region": "amer", "tier": "prod"},
	"target3": {"region": "emea", "tier": "test"},
}

func all[T any](xs []T, ok func(T) bool) bool {
	for _, x := range xs {
		if !ok(x) {
			return false
		}
	}
	return true
}
