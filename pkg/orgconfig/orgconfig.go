// Package orgconfig is the org registry every orgsync service shares: a YAML
// file naming each Genesys Cloud org by its orgsync key, with region/URLs,
// rate budget and (for the auth service only) client credentials, plus
// environment overrides for the credentials.
//
//	orgs:
//	  acme-src: {region: mypurecloud.com, clientId: "...", clientSecret: "...", rateLimit: 10, burst: 10}
//	  acme-t1:  {apiBaseURL: "http://127.0.0.1:8080", loginBaseURL: "http://127.0.0.1:8080", labels: {region: emea, tier: prod}}
//	sets:
//	  emea: [acme-t1]
//
// Labels and named sets let a command name many orgs at once: Select expands
// a label selector ("tier=prod,region=emea"), Expand a list of org keys and
// set names.
//
// Environment: ORGSYNC_ORG_<KEY>_CLIENT_ID and ORGSYNC_ORG_<KEY>_CLIENT_SECRET
// (key upper-cased, '-' → '_') override the file's credentials of an org the
// file lists. Secrets are never rendered: String, GoString and LogValue
// redact them.
package orgconfig

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
)

// ErrUnknownOrg is wrapped by Config.Org for a key the file does not list.
var ErrUnknownOrg = errors.New("unknown org")

// Org is one org's entry.
type Org struct {
	// Region is a Genesys region domain ("mypurecloud.ie") or AWS name
	// ("eu-west-1"); optional when both base URLs are set.
	Region string `yaml:"region"`
	// APIBaseURL / LoginBaseURL override the region's hosts (gcsim, proxies).
	APIBaseURL   string `yaml:"apiBaseURL"`
	LoginBaseURL string `yaml:"loginBaseURL"`
	// ClientID / ClientSecret of the org's OAuth client (client credentials
	// grant). Only the auth service needs them.
	ClientID     string `yaml:"clientId"`
	ClientSecret string `yaml:"clientSecret"`
	// RateLimit (requests/second) and Burst of the org's API budget; 0 means
	// the genesys defaults (10 and 10).
	RateLimit float64 `yaml:"rateLimit"`
	Burst     int     `yaml:"burst"`
	// Labels group orgs for selectors (sync set targets, --target-selector):
	// {region: emea, tier: regional}. See ParseSelector and Config.Select.
	Labels map[string]string `yaml:"labels,omitempty"`
}

// HasCredentials reports whether both client id and secret are set.
func (o Org) HasCredentials() bool { return o.ClientID != "" && o.ClientSecret != "" }

// String renders o with the secret redacted.
func (o Org) String() string {
	return fmt.Sprintf("{region:%s apiBaseURL:%s loginBaseURL:%s clientId:%s clientSecret:%s rateLimit:%g burst:%d}",
		o.Region, o.APIBaseURL, o.LoginBaseURL, o.ClientID, redact(o.ClientSecret), o.RateLimit, o.Burst)
}

// GoString keeps %#v from printing the secret.
func (o Org) GoString() string { return o.String() }

// LogValue implements slog.LogValuer with the secret redacted.
func (o Org) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("region", o.Region),
		slog.String("api_base_url", o.APIBaseURL),
		slog.String("login_base_url", o.LoginBaseURL),
		slog.String("client_id", o.ClientID),
		slog.String("client_secret", redact(o.ClientSecret)),
		slog.Float64("rate_limit", o.RateLimit),
		slog.Int("burst", o.Burst),
	)
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// Config is the loaded registry. It is immutable after Load.
type Config struct {
	// Path the config was loaded from ("" when built in code).
	Path string
	orgs map[string]Org
	// sets are named lists of org keys.
	sets map[string][]string
}

// file is the YAML document.
type file struct {
	Orgs map[string]Org      `yaml:"orgs"`
	Sets map[string][]string `yaml:"sets,omitempty"`
}

// New builds a Config from orgs (tests, `orgsync dev`) and validates it.
func New(orgs map[string]Org) (*Config, error) {
	c := &Config{orgs: make(map[string]Org, len(orgs))}
	for k, o := range orgs {
		c.orgs[k] = o
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads the registry at path, applies the environment overrides and
// validates it. See LoadEnv.
func Load(path string) (*Config, error) { return LoadEnv(path, os.Getenv) }

// LoadEnv is Load with the environment read through getenv (tests).
//
// A file that contains any clientSecret must not be readable by group or
// others: LoadEnv refuses it with the file's mode and the chmod that fixes
// it, because a world-readable secret is already leaked. Unknown YAML fields
// are errors (a typo like "clientSecrets" would otherwise silently drop a
// credential).
func LoadEnv(path string, getenv func(string) string) (*Config, error) {
	if path == "" {
		return nil, errors.New("orgconfig: no config file given (--config)")
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("orgconfig: %w", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("orgconfig: %w", err)
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("orgconfig: parse %s: %w", path, err)
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		var withSecret []string
		for k, o := range f.Orgs {
			if o.ClientSecret != "" {
				withSecret = append(withSecret, k)
			}
		}
		if len(withSecret) > 0 {
			sort.Strings(withSecret)
			return nil, fmt.Errorf("orgconfig: %s contains client secrets (orgs %s) but its mode %04o lets group/others read it; run `chmod 600 %s` (or move the secrets to ORGSYNC_ORG_<KEY>_CLIENT_SECRET)",
				path, strings.Join(withSecret, ", "), mode, path)
		}
	}
	c := &Config{Path: path, orgs: make(map[string]Org, len(f.Orgs)), sets: f.Sets}
	for k, o := range f.Orgs {
		if id := getenv(EnvClientID(k)); id != "" {
			o.ClientID = id
		}
		if secret := getenv(EnvClientSecret(k)); secret != "" {
			o.ClientSecret = secret
		}
		c.orgs[k] = o
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return c, nil
}

// envPrefix returns ORGSYNC_ORG_<KEY>_ for org key.
func envPrefix(key string) string {
	return "ORGSYNC_ORG_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_")) + "_"
}

// EnvClientID is the environment variable overriding key's client id.
func EnvClientID(key string) string { return envPrefix(key) + "CLIENT_ID" }

// EnvClientSecret is the environment variable overriding key's secret.
func EnvClientSecret(key string) string { return envPrefix(key) + "CLIENT_SECRET" }

// Validate reports every problem of c at once: keys that are not valid
// subject tokens, keys that collide in environment variable names, unknown
// regions, missing or malformed base URLs, negative budgets, half-set
// credentials. Missing credentials are not an error here (most services
// never need them); the auth service checks per org.
func (c *Config) Validate() error {
	var errs []error
	envOwner := map[string]string{}
	for _, k := range c.Keys() {
		o := c.orgs[k]
		if err := natsx.ValidateOrgKey(k); err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := envOwner[envPrefix(k)]; dup {
			errs = append(errs, fmt.Errorf("orgs %q and %q share the environment prefix %s; rename one", other, k, envPrefix(k)))
		}
		envOwner[envPrefix(k)] = k
		if o.Region != "" {
			if _, err := genesys.LookupRegion(o.Region); err != nil {
				errs = append(errs, fmt.Errorf("org %s: %w", k, err))
			}
		} else if o.APIBaseURL == "" || o.LoginBaseURL == "" {
			errs = append(errs, fmt.Errorf("org %s: region is required unless both apiBaseURL and loginBaseURL are set", k))
		}
		for name, u := range map[string]string{"apiBaseURL": o.APIBaseURL, "loginBaseURL": o.LoginBaseURL} {
			if u == "" {
				continue
			}
			if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				errs = append(errs, fmt.Errorf("org %s: %s %q is not an absolute http(s) URL", k, name, u))
			}
		}
		if o.RateLimit < 0 || o.Burst < 0 {
			errs = append(errs, fmt.Errorf("org %s: rateLimit and burst must not be negative", k))
		}
		if (o.ClientID == "") != (o.ClientSecret == "") {
			errs = append(errs, fmt.Errorf("org %s: clientId and clientSecret must be set together (file or %s / %s)", k, EnvClientID(k), EnvClientSecret(k)))
		}
		for _, lk := range slices.Sorted(maps.Keys(o.Labels)) {
			if err := validLabel(lk, o.Labels[lk]); err != nil {
				errs = append(errs, fmt.Errorf("org %s: %w", k, err))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.sets)) {
		if c.Has(name) {
			errs = append(errs, fmt.Errorf("set %s has the name of an org; rename it", name))
		}
		if len(c.sets[name]) == 0 {
			errs = append(errs, fmt.Errorf("set %s lists no org", name))
		}
		for _, m := range c.sets[name] {
			if !c.Has(m) {
				errs = append(errs, fmt.Errorf("set %s: %w %q", name, ErrUnknownOrg, m))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("orgconfig: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// Keys returns the org keys, sorted.
func (c *Config) Keys() []string {
	keys := make([]string, 0, len(c.orgs))
	for k := range c.orgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Has reports whether key is configured.
func (c *Config) Has(key string) bool { _, ok := c.orgs[key]; return ok }

// Entry returns the raw entry of key.
func (c *Config) Entry(key string) (Org, bool) { o, ok := c.orgs[key]; return o, ok }

// Org returns the genesys client config of key, with OrgID = key and
// defaults applied (base URLs derived from the region). It carries the
// credentials when configured; services that take tokens from the auth
// service use WithoutSecrets first.
func (c *Config) Org(key string) (genesys.OrgConfig, error) {
	o, ok := c.orgs[key]
	if !ok {
		return genesys.OrgConfig{}, fmt.Errorf("orgconfig: %w %q (configured: %s)", ErrUnknownOrg, key, strings.Join(c.Keys(), ", "))
	}
	return genesys.OrgConfig{
		OrgID:        key,
		Region:       o.Region,
		APIBaseURL:   o.APIBaseURL,
		LoginBaseURL: o.LoginBaseURL,
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		RateLimit:    o.RateLimit,
		Burst:        o.Burst,
	}.WithDefaults(), nil
}

// OrgConfigs returns Org for every key (e.g. for orgs.NewRegistry).
func (c *Config) OrgConfigs() map[string]genesys.OrgConfig {
	out := make(map[string]genesys.OrgConfig, len(c.orgs))
	for _, k := range c.Keys() {
		out[k], _ = c.Org(k)
	}
	return out
}

// WithoutSecrets returns a copy of c with every client secret removed, for
// services that authenticate through the auth service and must not hold
// credentials.
func (c *Config) WithoutSecrets() *Config {
	out := &Config{Path: c.Path, orgs: make(map[string]Org, len(c.orgs)), sets: c.sets}
	for k, o := range c.orgs {
		o.ClientSecret = ""
		o.ClientID = ""
		out.orgs[k] = o
	}
	return out
}

// WithRateShare returns a copy of c in which every org's sustained rate
// (unset means the genesys default) is scaled by share, the part of each
// org's budget one service takes. Services reading the same org as its
// provisioner (extractor, resolver, reconciler) take a share, so together
// they stay near the org's budget; all of them still adapt on 429. The burst
// is kept: a short read (one changed user) stays as fast as it was.
// A share outside (0, 1) returns c unchanged.
func (c *Config) WithRateShare(share float64) *Config {
	if share <= 0 || share >= 1 {
		return c
	}
	out := &Config{Path: c.Path, orgs: make(map[string]Org, len(c.orgs)), sets: c.sets}
	for k, o := range c.orgs {
		rps := o.RateLimit
		if rps == 0 {
			rps = genesys.DefaultRateLimit
		}
		o.RateLimit = rps * share
		out.orgs[k] = o
	}
	return out
}

// String lists the orgs with secrets redacted.
func (c *Config) String() string {
	var b strings.Builder
	b.WriteString("orgconfig{")
	for i, k := range c.Keys() {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%s", k, c.orgs[k])
	}
	b.WriteString("}")
	return b.String()
}

// GoString keeps %#v from printing secrets.
func (c *Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with secrets redacted.
func (c *Config) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(c.orgs))
	for _, k := range c.Keys() {
		attrs = append(attrs, slog.Any(k, c.orgs[k]))
	}
	return slog.GroupValue(attrs...)
}

// WithSets returns a copy of c with the named org sets (name → org keys),
// validated like a file's "sets:".
func (c *Config) WithSets(sets map[string][]string) (*Config, error) {
	out := &Config{Path: c.Path, orgs: c.orgs, sets: sets}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// Sets returns the named org sets (name → org keys); do not modify it.
func (c *Config) Sets() map[string][]string { return c.sets }

// Select returns the keys (sorted) of the orgs whose labels match selector
// (ParseSelector's syntax, e.g. "region=emea,tier=prod"). A malformed
// selector is an error; one that matches no org returns none and an error
// naming the labels in use, so a typo does not read as "nothing to do".
func (c *Config) Select(selector string) ([]string, error) {
	sel, err := ParseSelector(selector)
	if err != nil {
		return nil, err
	}
	out := c.Matching(sel)
	if len(out) == 0 {
		return nil, fmt.Errorf("selector %q matches no org (labels in use: %s)", selector, c.labelsInUse())
	}
	return out, nil
}

// labelsInUse lists every key=value label of the registry, sorted.
func (c *Config) labelsInUse() string {
	seen := map[string]bool{}
	for _, o := range c.orgs {
		for k, v := range o.Labels {
			seen[k+"="+v] = true
		}
	}
	if len(seen) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(seen)), ", ")
}

// Expand resolves names — org keys and set names — to org keys, in order,
// each once. An unknown name is an error that lists the known orgs and sets.
func (c *Config) Expand(names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	var unknown []string
	for _, n := range names {
		switch {
		case c.Has(n):
			add(n)
		case c.sets[n] != nil:
			for _, k := range c.sets[n] {
				add(k)
			}
		default:
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w %s (%s)", ErrUnknownOrg, strings.Join(unknown, ", "), c.Known())
	}
	return out, nil
}

// Known describes the registry's org keys and set names for an error
// message: "orgs: a, b; sets: emea".
func (c *Config) Known() string {
	s := "orgs: " + strings.Join(c.Keys(), ", ")
	if len(c.sets) > 0 {
		s += "; sets: " + strings.Join(slices.Sorted(maps.Keys(c.sets)), ", ")
	}
	return s
}

// Document is the registry as its YAML file holds it, secrets included when
// c has them (WithoutSecrets first to write a public copy).
func (c *Config) Document() any {
	return file{Orgs: c.orgs, Sets: c.sets}
}
