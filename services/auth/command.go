package auth

import (
	"context"
	"flag"
	"sync/atomic"

	"github.com/orgsync/orgsync/pkg/service"
)

// Command is the auth service's command: its flags and its builder from the
// shared service environment (`orgsync dev`; the binary can use it through
// service.Main). The environment's org registry must carry the credentials.
func Command() service.Command {
	return service.Command{
		Name:    "auth",
		Summary: "holds the Genesys client credentials; answers token requests on orgsync.auth.token.<org> and caches tokens in KV orgsync-tokens",
		Flags: func(fs *flag.FlagSet) service.Builder {
			var cfg Config
			fs.DurationVar(&cfg.SafetyMargin, "safety-margin", DefaultSafetyMargin, "cached tokens expire this long before Genesys says (expires_in minus margin)")
			fs.DurationVar(&cfg.FetchTimeout, "fetch-timeout", DefaultFetchTimeout, "bound of one POST /oauth/token")
			return func(env *service.Env) (service.Runnable, error) {
				cfg.Orgs, cfg.NC, cfg.JS, cfg.Topology, cfg.Logger = env.Orgs, env.NC, env.JS, env.Topology, env.Logger
				svc, err := New(cfg)
				if err != nil {
					return nil, err
				}
				return &runnable{svc: svc}, nil
			}
		},
	}
}

// runnable adapts Service (Start/Stop) to service.Runnable (Run/Ready).
type runnable struct {
	svc   *Service
	ready atomic.Bool
}

func (r *runnable) Run(ctx context.Context) error {
	if err := r.svc.Start(ctx); err != nil {
		return err
	}
	r.ready.Store(true)
	<-ctx.Done()
	r.ready.Store(false)
	return r.svc.Stop()
}

func (r *runnable) Ready() bool { return r.ready.Load() }
