package extractor

import (
	"flag"
	"strconv"

	"github.com/orgsync/orgsync/pkg/service"
)

// Command is the extractor's service command: its flags and its builder
// from the shared service environment (cmd/extractor and `orgsync dev`).
func Command() service.Command {
	return service.Command{
		Name:    "extractor",
		Summary: "reads reference users and everything they reference from a source org (orgsync.clone.<src>, orgsync.change.<src>) and publishes Snapshots",
		// reads source orgs; a source is often also a target whose provisioner owns the budget.
		RateShare: 0.5,
		Flags: func(fs *flag.FlagSet) service.Builder {
			var cfg Config
			cfg.RegisterFlags(fs, ConsumerDefaults)
			fs.IntVar(&cfg.SnapshotUsers, "snapshot-users", DefaultSnapshotUsers, "most users of a request's first snapshot: larger requests are published in parts as they are read, so provisioning starts early")
			fs.IntVar(&cfg.SnapshotUsersMax, "snapshot-users-max", 0, "most users of a later snapshot part: parts grow fourfold from --snapshot-users up to this (default "+strconv.Itoa(DefaultSnapshotUsersMax)+", at least --snapshot-users)")
			return func(env *service.Env) (service.Runnable, error) {
				cfg.Topology = env.Topology
				return New(cfg, Deps{JS: env.JS, NC: env.NC, Clients: env.Clients, Events: env.Events, Logger: env.Logger})
			}
		},
	}
}
