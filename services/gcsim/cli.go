package gcsim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Main runs the gcsim command line: flags --addr, --fixture (path; default
// the embedded demo fixture), --latency, --latency-jitter, --rate-limit,
// --not-found-after-create, --activation-delay, --token-ttl, --channel-ttl,
// --heartbeat, --evict-oldest-channel, --crm-delay. It serves until ctx ends.
// --help prints usage and returns nil.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	return Run(ctx, "gcsim", args, stderr, stderr)
}

// ErrUsage matches (errors.Is) Run's errors about its command line.
var ErrUsage = errors.New("usage")

type usageError struct{ error }

func (e usageError) Is(target error) bool { return target == ErrUsage }
func (e usageError) Unwrap() error        { return e.error }

// Run is Main for a host command line: prog names the command in the usage
// ("orgsync gcsim"), --help goes to stdout, logs and flag errors to stderr;
// a bad command line returns an error wrapping ErrUsage.
func Run(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8089", "listen address")
	fixture := fs.String("fixture", "", "fixture JSON file (default: embedded demo fixture)")
	var cfg Config
	fs.DurationVar(&cfg.Latency, "latency", 0, "latency added to every API request")
	fs.DurationVar(&cfg.LatencyJitter, "latency-jitter", 0, "random extra latency in [0, jitter)")
	fs.IntVar(&cfg.RateLimitPerMinute, "rate-limit", DefaultRateLimitPerMinute, "requests per minute per token (negative disables)")
	fs.DurationVar(&cfg.NotFoundAfterCreate, "not-found-after-create", DefaultNotFoundAfterCreate, "window in which GET of a new user/skill/team is 404 (negative disables)")
	fs.DurationVar(&cfg.ActivationDelay, "activation-delay", DefaultActivationDelay, "time a new user stays inactive (negative disables)")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", DefaultTokenTTL, "access token lifetime")
	fs.DurationVar(&cfg.ChannelTTL, "channel-ttl", DefaultChannelTTL, "notifications channel lifetime (renewed by subscribing)")
	fs.DurationVar(&cfg.NotificationHeartbeat, "heartbeat", DefaultNotificationHeartbeat, "WebSocket heartbeat interval (negative disables)")
	fs.BoolVar(&cfg.EvictOldestChannel, "evict-oldest-channel", false, "21st channel of a client evicts the oldest instead of 400")
	fs.DurationVar(&cfg.CRMDelay, "crm-delay", DefaultCRMDelay, "time a fake-CRM record stays PENDING")
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: %s [flags]\n\nSimulates the Genesys Cloud Platform API v2 (POST /oauth/token, /api/v2/..., admin under /_sim/).\n\nFlags:\n", prog)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	fs.SetOutput(io.Discard) // the error is returned, once
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return nil
		}
		return usageError{fmt.Errorf("%w (see %s --help)", err, prog)}
	}
	fs.SetOutput(stderr)
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %v (see %s --help)", fs.Args(), prog)}
	}
	sim, err := New(cfg)
	if err != nil {
		return err
	}
	f := DemoFixture()
	if *fixture != "" {
		data, err := os.ReadFile(*fixture)
		if err != nil {
			return fmt.Errorf("read fixture: %w", err)
		}
		if f, err = ParseFixture(data); err != nil {
			return fmt.Errorf("%s: %w", *fixture, err)
		}
	}
	if err := sim.LoadFixture(f); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("gcsim listening", "addr", *addr, "orgs", len(sim.OrgIDs()), "latency", cfg.Latency.String(), "rateLimit", cfg.RateLimitPerMinute, "started", time.Now().Format(time.RFC3339))
	return sim.ListenAndServe(ctx, *addr)
}
