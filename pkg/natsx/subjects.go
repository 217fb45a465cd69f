package natsx

import (
	"fmt"
	"regexp"
	"strings"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Subject prefixes and wildcards. Every subject orgsync uses is built by a
// function below so the layout lives in one place.
const (
	SubjectRoot        = "orgsync"
	cloneToken         = "clone"
	changeToken        = "change"
	snapshotToken      = "snapshot"
	planToken          = "plan"
	integrationToken   = "integration"
	eventToken         = "event"
	TokenSubjectPrefix = "orgsync.auth.token."
	// TokenSubjectWildcard is what the auth service listens on.
	TokenSubjectWildcard = TokenSubjectPrefix + "*"
	// OrgsCheckSubject is the auth service's request/reply endpoint of
	// `orgsync orgs check` (JSON OrgsCheckRequest → OrgsCheckReply, pkg/natsx).
	OrgsCheckSubject = "orgsync.ops.orgs.check"
)

// OrgsCheckRequest asks the auth service to check orgs (all when empty).
type OrgsCheckRequest struct {
	Orgs []string `json:"orgs,omitempty"`
}

// OrgsCheckReply is the auth service's answer: one result per org.
type OrgsCheckReply struct {
	Results []OrgCheck `json:"results"`
	Error   string     `json:"error,omitempty"`
}

// OrgCheck is the outcome of one org's check: a token from its login host,
// then one cheap read (GET /api/v2/organizations/me) with it. Reasons never
// contain a secret.
type OrgCheck struct {
	Org string `json:"org"`
	// TokenOK: the login host issued a token for the org's credentials.
	TokenOK bool `json:"tokenOk"`
	// Reachable: the API answered the read with 2xx.
	Reachable bool `json:"reachable"`
	// OrgName is the organization's name as the API reports it.
	OrgName string `json:"orgName,omitempty"`
	// RateLimit is the inin-ratelimit-count/allowed of the read's answer
	// ("" when the API sent none), RateLimitReset its reset in seconds.
	RateLimit      string `json:"rateLimit,omitempty"`
	RateLimitReset string `json:"rateLimitReset,omitempty"`
	// Error says precisely what failed ("" when all is well).
	Error string `json:"error,omitempty"`
}

// MaxOrgKeyLen bounds org keys; they appear in subjects, durable consumer
// names, KV keys and environment variable names.
const MaxOrgKeyLen = 64

var orgKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// ValidateOrgKey checks that key can be used as one NATS subject token, a
// durable consumer name and a KV key: 1..64 characters of letters, digits,
// '-' and '_', starting with a letter or digit. That excludes '.', the
// wildcards '*' and '>', whitespace and anything else that would split or
// widen a subject.
func ValidateOrgKey(key string) error {
	if key == "" {
		return fmt.Errorf("natsx: org key is empty")
	}
	if len(key) > MaxOrgKeyLen {
		return fmt.Errorf("natsx: org key %q is %d characters long, at most %d allowed", key, len(key), MaxOrgKeyLen)
	}
	if orgKeyPattern.MatchString(key) {
		return nil
	}
	for i, r := range key {
		ok := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '-' || r == '_')))
		if ok {
			continue
		}
		what := fmt.Sprintf("character %q", r)
		switch {
		case r == '.':
			what = "a '.' (it would split the subject)"
		case r == '*' || r == '>':
			what = fmt.Sprintf("the wildcard %q", r)
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			what = "whitespace"
		case r == '-' || r == '_':
			what = fmt.Sprintf("a leading %q", r)
		}
		return fmt.Errorf("natsx: org key %q contains %s at position %d; use letters, digits, '-' and '_' only", key, what, i)
	}
	return fmt.Errorf("natsx: org key %q is invalid", key)
}

func orgSubject(kind, org string) (string, error) {
	if err := ValidateOrgKey(org); err != nil {
		return "", fmt.Errorf("%s subject: %w", kind, err)
	}
	return SubjectRoot + "." + kind + "." + org, nil
}

// CloneSubject is where clone requests for source org src go.
func CloneSubject(src string) (string, error) { return orgSubject(cloneToken, src) }

// ChangeSubject is where change events of source org src go.
func ChangeSubject(src string) (string, error) { return orgSubject(changeToken, src) }

// SnapshotSubject is where snapshots extracted from source org src go.
func SnapshotSubject(src string) (string, error) { return orgSubject(snapshotToken, src) }

// PlanSubject is where plans for target org target go.
func PlanSubject(target string) (string, error) { return orgSubject(planToken, target) }

// IntegrationSubject is where CRM integration work for target org goes.
func IntegrationSubject(target string) (string, error) {
	return orgSubject(integrationToken, target)
}

// TokenSubject is the auth service's request subject for org's tokens.
func TokenSubject(org string) (string, error) {
	if err := ValidateOrgKey(org); err != nil {
		return "", fmt.Errorf("token subject: %w", err)
	}
	return TokenSubjectPrefix + org, nil
}

// EventKindToken is the subject token of an event kind ("step", "user",
// "target", "request", "audit", "drift").
func EventKindToken(kind orgsyncv1.EventKind) (string, error) {
	switch kind {
	case orgsyncv1.EventKind_EVENT_KIND_STEP:
		return "step", nil
	case orgsyncv1.EventKind_EVENT_KIND_USER:
		return "user", nil
	case orgsyncv1.EventKind_EVENT_KIND_TARGET:
		return "target", nil
	case orgsyncv1.EventKind_EVENT_KIND_REQUEST:
		return "request", nil
	case orgsyncv1.EventKind_EVENT_KIND_AUDIT:
		return "audit", nil
	case orgsyncv1.EventKind_EVENT_KIND_DRIFT:
		return "drift", nil
	}
	return "", fmt.Errorf("natsx: event kind %v has no subject token", kind)
}

// EventSubject is where events of kind about org go:
// orgsync.event.<org>.<kind>.
func EventSubject(org string, kind orgsyncv1.EventKind) (string, error) {
	base, err := orgSubject(eventToken, org)
	if err != nil {
		return "", err
	}
	tok, err := EventKindToken(kind)
	if err != nil {
		return "", err
	}
	return base + "." + tok, nil
}

// EventFilter matches every event of org (orgsync.event.<org>.>); an empty
// org matches every event of every org.
func EventFilter(org string) (string, error) {
	if org == "" {
		return SubjectRoot + "." + eventToken + ".>", nil
	}
	base, err := orgSubject(eventToken, org)
	if err != nil {
		return "", err
	}
	return base + ".>", nil
}

// EventKindFilters are the subject filters of the events of the given
// kinds about org (every org when org is ""): orgsync.event.<org|*>.<kind>.
func EventKindFilters(org string, kinds ...orgsyncv1.EventKind) ([]string, error) {
	base := SubjectRoot + "." + eventToken + ".*"
	if org != "" {
		var err error
		if base, err = orgSubject(eventToken, org); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(kinds))
	for _, k := range kinds {
		tok, err := EventKindToken(k)
		if err != nil {
			return nil, err
		}
		out = append(out, base+"."+tok)
	}
	return out, nil
}

// OrgFromSubject returns the org token of a subject built above
// (orgsync.<kind>.<org>[...] or orgsync.auth.token.<org>).
func OrgFromSubject(subject string) (string, error) {
	if org, ok := strings.CutPrefix(subject, TokenSubjectPrefix); ok {
		if err := ValidateOrgKey(org); err != nil {
			return "", err
		}
		return org, nil
	}
	parts := strings.Split(subject, ".")
	if len(parts) < 3 || parts[0] != SubjectRoot {
		return "", fmt.Errorf("natsx: subject %q is not an orgsync.<kind>.<org> subject", subject)
	}
	if err := ValidateOrgKey(parts[2]); err != nil {
		return "", err
	}
	return parts[2], nil
}
