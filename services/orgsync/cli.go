// Package orgsync is the orgsync command line: submit clone requests and
// follow them (clone, plan, status, watch), operate a deployment (reconcile,
// drift, audit, integrations, replay, failed, orgs), and run the whole
// system in one process (dev, demo).
//
// The command line is built on cobra. Adding a command is a constructor and
// one line:
//
//	// in foo.go
//	func newFooCmd(a *app) *cobra.Command {
//		cmd := &cobra.Command{Use: "foo ORG", Short: "one line for the command list", Args: cobra.ExactArgs(1)}
//		d := a.deploymentFlags(cmd)             // --nats, NATS credentials, --orgs
//		output := outputFlag(cmd, "text or json") // validated when parsed
//		cmd.RunE = func(cmd *cobra.Command, args []string) error { … }
//		return cmd
//	}
//
//	// in commands() below
//	newFooCmd,
//
// RunE returns nil (exit 0), usageErr(…) (exit 2), unreachable(err) (exit 3),
// errJobFailed when the outcome is already printed (exit 1), or any other
// error (exit 1), which Main prints once as "orgsync foo: ERR". Flags refuse
// bad values where they are parsed (choice, outputFlag, durationFlag), so a
// usage error never connects anywhere first.
package orgsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/telemetry"
)

// Exit statuses of Main (the table of `orgsync --help` and the README).
const (
	ExitOK          = 0
	ExitFailed      = 1 // the job or a target failed, or an operation failed
	ExitUsage       = 2 // bad command, flags or arguments
	ExitUnreachable = 3 // NATS or the orgsync services cannot be reached
	ExitNotFinished = 4 // stopped following (--timeout, Ctrl-C): the job goes on, its outcome is not known yet
)

const exitCodesHelp = `Exit status:
  0  success
  1  the job or a target failed (or the operation did)
  2  usage: unknown command, bad flag or argument
  3  cannot reach NATS or the orgsync services
  4  stopped following (--timeout, Ctrl-C, SIGTERM): the job goes on (orgsync status ID)`

// IO is where a command writes: Out for results (summary, JSON, help), Err
// for progress and diagnostics.
type IO struct {
	Out, Err io.Writer
}

// commands are the constructors of orgsync's subcommands, in the order of
// the command list.
func commands() []func(*app) *cobra.Command {
	return []func(*app) *cobra.Command{
		newCloneCmd, newPlanCmd, newApplyCmd, newDiffCmd, newGetCmd, newDescribeCmd, newDeleteCmd,
		newStatusCmd, newWatchCmd,
		newReconcileCmd, newDriftCmd, newAuditCmd, newIntegrationsCmd,
		newReplayCmd, newFailedCmd, newOrgsCmd,
		newDevCmd, newNATSCredsCmd, newGcsimCmd, newBenchCmd, newDemoCmd,
		newVersionCmd,
	}
}

// app is the state one run of the command line shares between commands.
type app struct {
	io IO
	// running is set once a command's RunE starts: an error after that is
	// the operation's, not the command line's.
	running bool
}

// exitError carries the exit status of a failed command; err (nil: the
// outcome was already printed) is what Main prints.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// usageErr is a usage error (exit 2).
func usageErr(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// unreachable marks err as NATS or a service being out of reach (exit 3).
func unreachable(err error) error { return &exitError{code: ExitUnreachable, err: err} }

// errJobFailed: the job or a target failed and the report says so (exit 1).
var errJobFailed = &exitError{code: ExitFailed}

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
	a := &app{io: out}
	root := a.rootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	code := a.exitCode(cmd, err)
	if perr := natsx.Refused(ctx); perr != nil {
		fmt.Fprintf(out.Err, "%s: %v\n", cmd.CommandPath(), perr)
		code = max(code, ExitFailed)
	}
	return code
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "orgsync",
		Short: "clone Genesys Cloud user configurations across organizations",
		Long: "orgsync — clone Genesys Cloud user configurations across organizations.\n\n" +
			"Commands that talk to a deployment take --nats (env ORGSYNC_NATS_URL) and its credentials, and\n" +
			"--orgs, the org registry (env ORGSYNC_ORGS; default the one orgsync dev writes), which names\n" +
			"target sets and labels (--target emea, --target-selector tier=prod).\n\n" + exitCodesHelp,
		Version:       versionString(),
		SilenceErrors: true, // Main prints errors once, with the exit status they map to
		SilenceUsage:  true, // a failed job is no reason to show the flags
	}
	root.SetOut(a.io.Out)
	root.SetErr(a.io.Err)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: ExitUsage, err: err} })
	for _, c := range commands() {
		root.AddCommand(c(a))
	}
	a.markRunning(root)
	return root
}

// markRunning makes every command's RunE set a.running first: cobra checks
// arguments and required flags before RunE, so an error before it is a
// usage error, after it the operation's.
func (a *app) markRunning(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			a.running = true
			return run(cmd, args)
		}
	}
	for _, s := range c.Commands() {
		a.markRunning(s)
	}
}

// exitCode prints err (once) and maps it to the exit status.
func (a *app) exitCode(cmd *cobra.Command, err error) int {
	if err == nil {
		return ExitOK
	}
	path := "orgsync"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	code := ExitFailed
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case !a.running: // cobra's own: unknown command, missing flag, argument count
		code = ExitUsage
	}
	if ee == nil || ee.err != nil {
		fmt.Fprintf(a.io.Err, "%s: %s\n", path, strings.TrimRight(err.Error(), "\n"))
	}
	if code == ExitUsage {
		fmt.Fprintf(a.io.Err, "Run '%s --help' for usage.\n", path)
	}
	return code
}

// groupCmd makes cmd a group of subcommands: run without one, or with an
// unknown one, it is a usage error naming the subcommands (cobra would
// print the help and exit 0).
func groupCmd(cmd *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	cmd.AddCommand(subs...)
	cmd.Args = func(c *cobra.Command, args []string) error {
		var names []string
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() {
				names = append(names, s.Name())
			}
		}
		if len(args) == 0 {
			return usageErr("give a subcommand: %s", strings.Join(names, ", "))
		}
		hint := ""
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2 // cobra's default, set only when it suggests itself
		}
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			hint = "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return usageErr("unknown command %q for %q (subcommands: %s)%s", args[0], c.CommandPath(), strings.Join(names, ", "), hint)
	}
	cmd.RunE = func(*cobra.Command, []string) error { return nil } // Args refused already
	return cmd
}

// revision is the VCS revision when the build info has none: the go command
// does not stamp VCS information in workspace mode (go.work), so `make build`
// passes -ldflags "-X github.com/orgsync/orgsync/services/orgsync.revision=$(git rev-parse HEAD)".
var revision = "unknown"

// versionString is the module version and VCS revision the binary was built
// from (runtime/debug build info, else the stamped revision).
func versionString() string {
	version, rev, modified, when := "(devel)", revision, "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			case "vcs.time":
				when = ", " + s.Value
			}
		}
	}
	return fmt.Sprintf("orgsync %s, revision %s%s%s, %s", version, rev, modified, when, runtime.Version())
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version and VCS revision orgsync was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return err
		},
	}
}

// defaultStore is `orgsync dev`'s store; the CLI finds its credentials and
// org registry there.
var defaultStore = filepath.Join(".orgsync", "dev")

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func unmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

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

// exactArgs accepts exactly n positional arguments, else a usage error
// saying msg.
func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%s (got %d: %s)", msg, len(args), strings.Join(args, " "))
		}
		return nil
	}
}
