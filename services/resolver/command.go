package resolver

import (
	"flag"
	"fmt"
	"strings"

	"github.com/orgsync/orgsync/pkg/service"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Command is the resolver's service command: its flags and its builder from
// the shared service environment (cmd/resolver and `orgsync dev`).
func Command() service.Command {
	return service.Command{
		Name:    "resolver",
		Summary: "turns Snapshots (orgsync.snapshot.<src>) into one dependency-ordered Plan per target org after pre-flight checks against the target (orgsync.plan.<target>)",
		// pre-flight reads of target orgs, whose budgets their provisioners own.
		RateShare: 0.5,
		Flags: func(fs *flag.FlagSet) service.Builder {
			var cfg Config
			rules := emailRules{}
			policies := capacityPolicies{}
			fs.Var(policies, "capacity-policy", "capacity pre-flight policy of a target org: TARGET=repair|reject (default repair); repeatable")
			fs.Var(rules, "email-map", "email rule of a target org: TARGET=FROM_DOMAIN:TO_DOMAIN (or TARGET=TO_DOMAIN for any domain); repeatable; a request's own mapping wins")
			cfg.RegisterFlags(fs, ConsumerDefaults)
			fs.DurationVar(&cfg.LookupTTL, "lookup-ttl", DefaultLookupTTL, "pre-flight reuses a role, queue, division or license it found this recently (negative: always look up)")
			return func(env *service.Env) (service.Runnable, error) {
				cfg.Topology = env.Topology
				if len(rules) > 0 {
					cfg.EmailMapping = rules
				}
				if len(policies) > 0 {
					cfg.CapacityPolicy = policies
				}
				return New(cfg, Deps{JS: env.JS, NC: env.NC, Clients: env.Clients, Events: env.Events, Logger: env.Logger})
			}
		},
	}
}

// emailRules is the repeatable --email-map flag.
type emailRules map[string]*orgsyncv1.EmailMapping

func (r emailRules) String() string {
	var parts []string
	for t, m := range r {
		parts = append(parts, fmt.Sprintf("%s=%s:%s", t, m.GetFromDomain(), m.GetToDomain()))
	}
	return strings.Join(parts, ",")
}

func (r emailRules) Set(v string) error {
	target, rule, ok := strings.Cut(v, "=")
	if !ok || target == "" || rule == "" {
		return fmt.Errorf("want TARGET=FROM_DOMAIN:TO_DOMAIN or TARGET=TO_DOMAIN, got %q", v)
	}
	from, to, ok := strings.Cut(rule, ":")
	if !ok {
		from, to = "", rule
	}
	if _, dup := r[target]; dup {
		return fmt.Errorf("target %s has two email rules", target)
	}
	r[target] = &orgsyncv1.EmailMapping{FromDomain: from, ToDomain: to}
	return nil
}

// capacityPolicies is the repeatable --capacity-policy flag.
type capacityPolicies map[string]string

func (p capacityPolicies) String() string {
	var parts []string
	for t, v := range p {
		parts = append(parts, t+"="+v)
	}
	return strings.Join(parts, ",")
}

func (p capacityPolicies) Set(v string) error {
	target, policy, ok := strings.Cut(v, "=")
	if !ok || target == "" || !ValidCapacityPolicy(policy) || policy == "" {
		return fmt.Errorf("want TARGET=%s or TARGET=%s, got %q", CapacityRepair, CapacityReject, v)
	}
	p[target] = policy
	return nil
}
