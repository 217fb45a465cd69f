package genesys

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults of OrgConfig; see the field docs.
const (
	DefaultRateLimit          = 10.0 // requests per second per org: the pipeline's budget
	DefaultBurst              = 10
	DefaultMinRateLimit       = 0.5
	DefaultPageSize           = 100
	MaxPageSize               = 100 // Genesys rejects larger pages
	DefaultRequestTimeout     = 30 * time.Second
	DefaultTokenRefreshEarly  = 5 * time.Minute
	DefaultConsistencyWindow  = 30 * time.Second
	DefaultUserAgent          = "orgsync-genesys/1"
	DefaultVersionConflictTry = 5
)

// OrgConfig is what a Client needs to talk to one Genesys Cloud organization.
// Zero fields take the defaults above (see WithDefaults). ClientSecret is
// never printed: String and LogValue redact it.
type OrgConfig struct {
	OrgID string // orgsync's name for the org; used in errors, metrics and limiter keys

	// Region selects https://login.<domain> and https://api.<domain>; it accepts
	// a domain ("mypurecloud.ie") or an AWS region ("eu-west-1"). APIBaseURL and
	// LoginBaseURL, when set, override it (gcsim, proxies); with both set,
	// Region may be empty.
	Region       string
	APIBaseURL   string
	LoginBaseURL string

	ClientID     string
	ClientSecret string

	RateLimit    float64 // steady requests/second budget for the org (default 10)
	Burst        int     // token bucket size (default 10)
	MinRateLimit float64 // floor the adaptive limiter never goes below (default 0.5)

	PageSize          int           // page size for list calls, 1..100 (default 100)
	RequestTimeout    time.Duration // per HTTP attempt (default 30s)
	TokenRefreshEarly time.Duration // refresh a token this long before expiry, capped at half its lifetime (default 5m)
	ConsistencyWindow time.Duration // how long after a create a 404 on GET is retried (default 30s)
	UserAgent         string
}

// WithDefaults returns c with every zero field set to its default and the base
// URLs derived from Region when not overridden (an unknown Region is left for
// Validate to report).
func (c OrgConfig) WithDefaults() OrgConfig {
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.MinRateLimit == 0 {
		c.MinRateLimit = min(DefaultMinRateLimit, c.RateLimit)
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.TokenRefreshEarly == 0 {
		c.TokenRefreshEarly = DefaultTokenRefreshEarly
	}
	if c.ConsistencyWindow == 0 {
		c.ConsistencyWindow = DefaultConsistencyWindow
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Region != "" && (c.APIBaseURL == "" || c.LoginBaseURL == "") {
		if r, err := LookupRegion(c.Region); err == nil {
			if c.APIBaseURL == "" {
				c.APIBaseURL = r.APIBaseURL()
			}
			if c.LoginBaseURL == "" {
				c.LoginBaseURL = r.LoginBaseURL()
			}
		}
	}
	c.APIBaseURL = strings.TrimRight(c.APIBaseURL, "/")
	c.LoginBaseURL = strings.TrimRight(c.LoginBaseURL, "/")
	return c
}

// Validate reports every problem of c (after defaults are applied) at once.
// Credentials are required; a client built WithTokenSource skips that check.
func (c OrgConfig) Validate() error { return c.validate(true) }

func (c OrgConfig) validate(needCredentials bool) error {
	var errs []error
	if strings.TrimSpace(c.OrgID) == "" {
		errs = append(errs, errors.New("OrgID is required"))
	}
	if c.Region != "" {
		if _, err := LookupRegion(c.Region); err != nil {
			errs = append(errs, err)
		}
	} else if c.APIBaseURL == "" || c.LoginBaseURL == "" {
		errs = append(errs, errors.New("Region is required unless both APIBaseURL and LoginBaseURL are set"))
	}
	for name, u := range map[string]string{"APIBaseURL": c.APIBaseURL, "LoginBaseURL": c.LoginBaseURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q is not an absolute http(s) URL", name, u))
		}
	}
	if needCredentials && (c.ClientID == "" || c.ClientSecret == "") {
		errs = append(errs, errors.New("ClientID and ClientSecret are required"))
	}
	if c.RateLimit < 0 || c.Burst < 0 || c.MinRateLimit < 0 {
		errs = append(errs, errors.New("RateLimit, Burst and MinRateLimit must not be negative"))
	}
	if c.MinRateLimit > c.RateLimit && c.RateLimit > 0 {
		errs = append(errs, fmt.Errorf("MinRateLimit %g exceeds RateLimit %g", c.MinRateLimit, c.RateLimit))
	}
	if c.PageSize < 0 || c.PageSize > MaxPageSize {
		errs = append(errs, fmt.Errorf("PageSize %d out of range 1..%d", c.PageSize, MaxPageSize))
	}
	if c.RequestTimeout < 0 || c.TokenRefreshEarly < 0 || c.ConsistencyWindow < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("genesys: invalid config for org %q: %w", c.OrgID, errors.Join(errs...))
}

// String renders the config with the secret redacted.
func (c OrgConfig) String() string {
	return fmt.Sprintf("OrgConfig{OrgID:%s Region:%s APIBaseURL:%s LoginBaseURL:%s ClientID:%s ClientSecret:%s RateLimit:%g Burst:%d}",
		c.OrgID, c.Region, c.APIBaseURL, c.LoginBaseURL, c.ClientID, redact(c.ClientSecret), c.RateLimit, c.Burst)
}

// GoString keeps %#v from printing the secret too.
func (c OrgConfig) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with the secret redacted.
func (c OrgConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("org_id", c.OrgID),
		slog.String("region", c.Region),
		slog.String("api_base_url", c.APIBaseURL),
		slog.String("login_base_url", c.LoginBaseURL),
		slog.String("client_id", c.ClientID),
		slog.String("client_secret", redact(c.ClientSecret)),
		slog.Float64("rate_limit", c.RateLimit),
		slog.Int("burst", c.Burst),
	)
}

func redact(secret string) string {
	if secret == "" {
		return ""
	}
	return "[REDACTED]"
}
