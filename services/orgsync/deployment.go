package orgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
)

// deployment is how a command reaches an orgsync deployment: NATS (URL,
// credentials, TLS) and the org registry that names its orgs, sets and labels.
type deployment struct {
	url  string
	auth natsx.ClientAuth
	// orgsFile is --orgs; empty: the dev store's registry when there is one.
	orgsFile string
	reg      *orgconfig.Config
	regErr   error
	loaded   bool
}

// deploymentFlags registers --nats, the NATS credential and TLS flags and
// --orgs on cmd.
func (a *app) deploymentFlags(cmd *cobra.Command) *deployment {
	d := &deployment{}
	cmd.Flags().StringVar(&d.url, "nats", envOr("ORGSYNC_NATS_URL", nats.DefaultURL), "NATS server URL(s) of the orgsync deployment, as orgsync dev prints it (env ORGSYNC_NATS_URL)")
	addGoFlags(cmd, d.auth.Register)
	cmd.Flags().StringVar(&d.orgsFile, "orgs", os.Getenv("ORGSYNC_ORGS"), "org registry YAML: org keys, sets and labels (env ORGSYNC_ORGS; default "+filepath.Join(defaultStore, "orgs.yaml")+" when it exists)")
	_ = cmd.MarkFlagFilename("orgs", "yaml", "yml")
	return d
}

// registry returns the org registry, or nil when none is given or found
// (names are then passed on as they are, and the services judge them).
func (d *deployment) registry() (*orgconfig.Config, error) {
	if d.loaded {
		return d.reg, d.regErr
	}
	d.loaded = true
	path := d.orgsFile
	if path == "" {
		if p := filepath.Join(defaultStore, "orgs.yaml"); fileExists(p) {
			path = p
		}
	}
	if path != "" {
		d.reg, d.regErr = orgconfig.Load(path)
		if d.regErr != nil {
			d.regErr = usageErr("--orgs: %v", d.regErr)
		}
	}
	return d.reg, d.regErr
}

// checkOrg is a usage error when the registry does not list org.
func (d *deployment) checkOrg(flag, org string) error {
	if err := natsx.ValidateOrgKey(org); err != nil {
		return usageErr("--%s: %v", flag, err)
	}
	reg, err := d.registry()
	if err != nil || reg == nil || reg.Has(org) {
		return err
	}
	return usageErr("--%s: %w %q (%s)", flag, orgconfig.ErrUnknownOrg, org, reg.Known())
}

// targets expands --target names (org keys and set names) and a
// --target-selector into org keys, each once, in the order given.
func (d *deployment) targets(names []string, selector string) ([]string, error) {
	reg, err := d.registry()
	if err != nil {
		return nil, err
	}
	if reg == nil {
		if selector != "" {
			return nil, usageErr("--target-selector needs the org registry: give --orgs FILE (or env ORGSYNC_ORGS)")
		}
		return names, nil
	}
	out := names
	if len(names) > 0 {
		if out, err = reg.Expand(names); err != nil {
			return nil, usageErr("--target: %v", err)
		}
	}
	if selector != "" {
		sel, err := reg.Select(selector)
		if err != nil {
			return nil, usageErr("--target-selector: %v", err)
		}
		for _, k := range sel {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

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

type refuseKey struct{}

// connect opens NATS and JetStream as the CLI's NATS user; failing to is
// exit status 3. A permission violation cancels ctx's command (Main
// reports it).
func (d *deployment) connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := natsx.Connect(d.url, natsx.RoleCLI, cliCreds(d.auth), slog.New(slog.DiscardHandler),
		nats.Name("orgsync-cli"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, unreachable(err)
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
		return nil, nil, unreachable(fmt.Errorf("JetStream on %s: %w", natsx.RedactURL(d.url), err))
	}
	return nc, js, nil
}

// request sends a request to a service and waits for its answer; no
// service answering is exit status 3.
func request(ctx context.Context, nc *nats.Conn, subject string, body []byte, service string) (*nats.Msg, error) {
	msg, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
			return nil, unreachable(fmt.Errorf("request on %s: %w (is the %s running?)", subject, err, service))
		}
		return nil, fmt.Errorf("request on %s: %w", subject, err)
	}
	return msg, nil
}
