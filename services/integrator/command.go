package integrator

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/orgsync/orgsync/pkg/service"
)

// Command is the integrator's service command (cmd/integrator and
// `orgsync dev`).
func Command() service.Command {
	return service.Command{
		Name:    "integrator",
		Summary: "syncs provisioned users to each target's CRM (orgsync.integration.<target>), decoupled from provisioning: integration instance check, upsert, status polling, health counts and failure-rate alerts",
		// Genesys: one integration check per target and TTL, in orgs a
		// provisioner owns.
		RateShare: 0.25,
		Flags: func(fs *flag.FlagSet) service.Builder {
			var cfg Config
			var crmFile string
			fs.StringVar(&crmFile, "crm", os.Getenv("ORGSYNC_CRM"), "YAML file of CRM adapters per target org: TARGET: {baseURL, apiKey, integrationName}; apiKey may come from env ORGSYNC_CRM_<TARGET>_API_KEY instead, else the file must be mode 0600 (env ORGSYNC_CRM)")
			cfg.RegisterFlags(fs, ConsumerDefaults)
			fs.DurationVar(&cfg.Deadline, "deadline", DefaultDeadline, "how long one CRM sync may take before it counts as failed")
			fs.DurationVar(&cfg.InitialBackoff, "initial-backoff", DefaultInitialBackoff, "first wait between status polls (doubles, with jitter)")
			fs.DurationVar(&cfg.MaxBackoff, "max-backoff", DefaultMaxBackoff, "longest wait between status polls")
			fs.Float64Var(&cfg.FailureRateThreshold, "alert-failure-rate", DefaultFailureRateThreshold, "failure rate (0..1] of an org's CRM syncs above which an alert event is raised")
			fs.DurationVar(&cfg.IntegrationCheckTTL, "integration-check-ttl", DefaultIntegrationCheckTTL, "how long an ACTIVE Genesys integration instance is trusted before it is checked again (negative: every sync)")
			fs.IntVar(&cfg.MinSamples, "alert-min-samples", DefaultMinSamples, "finished syncs an org needs before the failure rate can alert")
			return func(env *service.Env) (service.Runnable, error) {
				cfg.Topology = env.Topology
				if crmFile != "" {
					targets, err := LoadCRMFile(crmFile)
					if err != nil {
						return nil, err
					}
					cfg.Targets = targets
				}
				return New(cfg, Deps{JS: env.JS, NC: env.NC, Clients: env.Clients, Events: env.Events, Logger: env.Logger})
			}
		},
	}
}

// LoadCRMFile reads the CRM adapters per target from a YAML file, with
// each target's API key overridable by the environment (EnvAPIKey). A file
// that holds an API key itself must not be readable by group or others;
// one whose keys all come from the environment (a ConfigMap, a compose
// bind mount) may be.
func LoadCRMFile(path string) (map[string]CRMTarget, error) { return LoadCRMFileEnv(path, os.Getenv) }

// LoadCRMFileEnv is LoadCRMFile with the environment read through getenv.
func LoadCRMFileEnv(path string, getenv func(string) string) (map[string]CRMTarget, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("integrator: CRM file: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("integrator: CRM file: %w", err)
	}
	var out map[string]CRMTarget
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		// yaml's messages quote the offending values, which may be keys:
		// name the lines only.
		lines := yamlLine.FindAllString(err.Error(), -1)
		if len(lines) == 0 {
			lines = []string{"unreadable"}
		}
		return nil, fmt.Errorf("integrator: CRM file %s is not TARGET: {baseURL, apiKey, integrationName} YAML (%s)", path, strings.Join(lines, ", "))
	}
	for k, t := range out {
		if t.APIKey != "" && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("integrator: CRM file %s holds the API key of %s and must be mode 0600, is %v (or pass the key in %s)", path, k, st.Mode().Perm(), EnvAPIKey(k))
		}
		if key := getenv(EnvAPIKey(k)); key != "" {
			t.APIKey = key
			out[k] = t
		}
	}
	return out, nil
}

// EnvAPIKey is the environment variable holding target's CRM API key
// (ORGSYNC_CRM_<TARGET>_API_KEY), which overrides the file's apiKey.
func EnvAPIKey(target string) string {
	return "ORGSYNC_CRM_" + strings.ToUpper(strings.ReplaceAll(target, "-", "_")) + "_API_KEY"
}

var yamlLine = regexp.MustCompile(`line \d+`)
