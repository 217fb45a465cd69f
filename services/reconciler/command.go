package reconciler

import (
	"flag"
	"os"

	"github.com/orgsync/orgsync/pkg/service"
)

// EnvWebhookSecret is the environment variable holding the webhook's HMAC
// secret (never a flag: flags show up in process listings).
const EnvWebhookSecret = "ORGSYNC_WEBHOOK_SECRET"

// Command is the reconciler's service command (cmd/reconciler and
// `orgsync dev`).
func Command() service.Command {
	return service.Command{
		Name:    "reconciler",
		Summary: "turns Notifications API audit events, signed webhook deliveries and sweeps into ChangeEvents on orgsync.change.<src>",
		// sweeps and channel upkeep: background reads of source orgs.
		RateShare: 0.25,
		Flags: func(fs *flag.FlagSet) service.Builder {
			var cfg Config
			fs.StringVar(&cfg.WebhookAddr, "webhook-addr", ":8090", "listen address of the signed audit webhook; empty: no listener")
			fs.StringVar(&cfg.WebhookPath, "webhook-path", DefaultWebhookPath, "path of the audit webhook (POST)")
			fs.DurationVar(&cfg.WebhookTolerance, "webhook-tolerance", DefaultWebhookTolerance, "accepted clock difference of "+HeaderTimestamp+", either direction")
			fs.Int64Var(&cfg.WebhookMaxBody, "webhook-max-body", DefaultWebhookMaxBody, "maximum webhook body in bytes (larger: 413)")
			fs.BoolVar(&cfg.WebhookDisabled, "no-webhook", false, "disable the webhook endpoint")
			fs.DurationVar(&cfg.SweepInterval, "sweep-interval", DefaultSweepInterval, "interval of the periodic sweep of every tracked user; negative disables it")
			fs.BoolVar(&cfg.NotificationsDisabled, "no-notifications", false, "disable the Notifications API subscriber")
			fs.DurationVar(&cfg.SyncSets.SweepInterval, "selection-sweep-interval", DefaultSyncSetSweepInterval, "re-resolve every sync set's selection this often (joins the Notifications API does not report); negative: never")
			fs.BoolVar(&cfg.SyncSets.Disabled, "no-syncsets", false, "do not serve sync sets ("+SyncSetApplySubject+")")
			fs.DurationVar(&cfg.ChannelRenewMargin, "channel-renew-margin", DefaultChannelRenewMargin, "renew notification channels this long before they expire")
			return func(env *service.Env) (service.Runnable, error) {
				cfg.WebhookSecret = os.Getenv(EnvWebhookSecret)
				cfg.Replicas = env.Topology.Replicas
				return New(cfg, Deps{JS: env.JS, NC: env.NC, Clients: env.Clients, Events: env.Events, Logger: env.Logger, Orgs: env.Orgs})
			}
		},
	}
}
