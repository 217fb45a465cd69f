package provisioner

import (
	"flag"
	"fmt"
	"strings"

	"github.com/orgsync/orgsync/pkg/service"
)

// Command is the provisioner's service command: its flags and its builder
// from the shared service environment (cmd/provisioner and `orgsync dev`).
func Command() service.Command {
	return service.Command{
		Name:    "provisioner",
		Summary: "applies plans (orgsync.plan.<target>) to the target orgs it owns through the rate-limited Genesys API; ID translation and step journal in bbolt",
		Flags: func(fs *flag.FlagSet) service.Builder {
			var cfg Config
			own := fs.String("own", "all", `target org keys this instance owns, comma-separated, or "all" (every org in --orgs); a second instance owning the same org is its hot standby`)
			fs.StringVar(&cfg.StatePath, "state", "provisioner.db", "bbolt file of this instance (ID translation, step journal, baselines); one file per process")
			fs.StringVar(&cfg.Instance, "instance", "provisioner", "instance name in logs")
			cfg.RegisterFlags(fs, ConsumerDefaults)
			fs.IntVar(&cfg.UserConcurrency, "user-concurrency", 0, "users of one plan worked on at once within a step (0: default)")
			fs.DurationVar(&cfg.PinnedTTL, "pinned-ttl", 0, "how long the active instance of an org keeps it after it stops pulling (dies); the standby takes over after this, and the interrupted plan is redelivered after --ack-wait (0: natsx default 30s)")
			drift := fs.String("drift-policy", "", `per target org, what a sweep does with manual edits of cloned users: "org=enforce|report,..." (unlisted orgs: enforce, restore the source configuration)`)
			return func(env *service.Env) (service.Runnable, error) {
				orgs, err := parseOwn(*own)
				if err != nil {
					return nil, err
				}
				cfg.Orgs = orgs
				cfg.Topology = env.Topology
				if cfg.DriftPolicy, err = ParseDriftPolicy(*drift); err != nil {
					return nil, err
				}
				return New(cfg, Deps{JS: env.JS, NC: env.NC, Clients: env.Clients, Events: env.Events, Logger: env.Logger})
			}
		},
	}
}

// parseOwn parses --own: "all" (or empty) means every configured org.
func parseOwn(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" || strings.EqualFold(strings.TrimSpace(s), "all") {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--own %q names no org", s)
	}
	return out, nil
}
