package orgsync

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/emailmap"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// requestIDPattern is the request id contract of CloneRequest.request_id.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// CloneSpec is what a user asks for on the command line; Build turns it into
// a CloneRequest.
type CloneSpec struct {
	// RequestID; empty = a new UUID.
	RequestID string
	SourceOrg string
	// Users by Genesys user id or email (anything with an "@" is an email).
	Users       []string
	Targets     []string
	DryRun      bool
	Include     []orgsyncv1.Component
	Existing    orgsyncv1.ExistingUserPolicy
	EmailMap    map[string]*orgsyncv1.EmailMapping
	RequestedBy string
}

// Build returns the validated CloneRequest of s.
func (s CloneSpec) Build() (*orgsyncv1.CloneRequest, error) {
	id := s.RequestID
	if id == "" {
		id = uuid.NewString()
	}
	req := &orgsyncv1.CloneRequest{
		RequestId:   id,
		SourceOrg:   s.SourceOrg,
		TargetOrgs:  s.Targets,
		RequestedAt: timestamppb.Now(),
		RequestedBy: s.RequestedBy,
		Options: &orgsyncv1.CloneOptions{
			DryRun: s.DryRun, Include: s.Include, ExistingUsers: s.Existing, EmailMapping: s.EmailMap,
		},
	}
	for _, u := range s.Users {
		u = strings.TrimSpace(u)
		if strings.Contains(u, "@") {
			req.Users = append(req.Users, &orgsyncv1.UserSelector{Selector: &orgsyncv1.UserSelector_Email{Email: u}})
		} else {
			req.Users = append(req.Users, &orgsyncv1.UserSelector{Selector: &orgsyncv1.UserSelector_UserId{UserId: u}})
		}
	}
	if err := ValidateRequest(req); err != nil {
		return nil, err
	}
	return req, nil
}

// ValidateRequest checks what a publisher can check without the org
// configuration: request id, org keys, at least one user and one target,
// targets distinct from the source and from each other, selectors set,
// email mappings valid and for named targets. Every problem is reported.
// Whether the orgs are configured and the users exist is the pipeline's to
// say (it reports a failed event).
func ValidateRequest(req *orgsyncv1.CloneRequest) error {
	var errs []error
	if !requestIDPattern.MatchString(req.GetRequestId()) {
		errs = append(errs, fmt.Errorf("request id %q must be 1..128 characters of letters, digits, '-' and '_'", req.GetRequestId()))
	}
	if req.GetSourceOrg() == "" {
		errs = append(errs, errors.New("source org is required (--source)"))
	} else if err := natsx.ValidateOrgKey(req.GetSourceOrg()); err != nil {
		errs = append(errs, fmt.Errorf("source org: %w", err))
	}
	if len(req.GetUsers()) == 0 {
		errs = append(errs, errors.New("at least one user is required (--user EMAIL|ID)"))
	}
	for i, u := range req.GetUsers() {
		if err := validSelector(u); err != nil {
			errs = append(errs, fmt.Errorf("user %d: %w", i+1, err))
		}
	}
	if len(req.GetTargetOrgs()) == 0 {
		errs = append(errs, errors.New("at least one target org is required (--target)"))
	}
	seen := map[string]bool{}
	for _, t := range req.GetTargetOrgs() {
		switch err := natsx.ValidateOrgKey(t); {
		case err != nil:
			errs = append(errs, fmt.Errorf("target org: %w", err))
		case t == req.GetSourceOrg():
			errs = append(errs, fmt.Errorf("target org %q is the source org", t))
		case seen[t]:
			errs = append(errs, fmt.Errorf("target org %q is named twice", t))
		}
		seen[t] = true
	}
	for target, rule := range req.GetOptions().GetEmailMapping() {
		if !seen[target] {
			errs = append(errs, fmt.Errorf("email mapping for %q, which is not a target of this request", target))
		}
		if err := emailmap.Validate(rule); err != nil {
			errs = append(errs, fmt.Errorf("email mapping for %s: %w", target, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid clone request: %w", errors.Join(errs...))
	}
	return nil
}

// validSelector checks that a user selector is an email address or a
// Genesys user id (a UUID): anything else can never name a user.
func validSelector(u *orgsyncv1.UserSelector) error {
	switch email, id := u.GetEmail(), u.GetUserId(); {
	case email == "" && id == "":
		return errors.New("empty selector (give an email or a user id)")
	case email != "":
		if a, err := mail.ParseAddress(email); err != nil || a.Address != email || a.Name != "" {
			return fmt.Errorf("%q is not an email address", email)
		}
	default:
		if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
			return fmt.Errorf("%q is neither an email address nor a Genesys user id (a UUID such as 5f0c2a4e-0000-4000-8000-0000000000a1)", id)
		}
	}
	return nil
}

// componentNames maps the --include names to components.
var componentNames = map[string]orgsyncv1.Component{
	"profile":     orgsyncv1.Component_COMPONENT_PROFILE,
	"license":     orgsyncv1.Component_COMPONENT_LICENSE,
	"skills":      orgsyncv1.Component_COMPONENT_SKILLS,
	"languages":   orgsyncv1.Component_COMPONENT_LANGUAGES,
	"utilization": orgsyncv1.Component_COMPONENT_UTILIZATION,
	"roles":       orgsyncv1.Component_COMPONENT_ROLES,
	"grants":      orgsyncv1.Component_COMPONENT_ROLES,
	"queues":      orgsyncv1.Component_COMPONENT_QUEUES,
	"team":        orgsyncv1.Component_COMPONENT_TEAM,
	"phone":       orgsyncv1.Component_COMPONENT_PHONE,
}

// ParseComponents parses "skills,queues,..." (empty = all components).
func ParseComponents(s string) ([]orgsyncv1.Component, error) {
	var out []orgsyncv1.Component
	for _, name := range splitList(s) {
		c, ok := componentNames[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("unknown component %q (known: profile, license, skills, languages, utilization, roles, queues, team, phone)", name)
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseExisting parses --existing adopt|skip|fail.
func ParseExisting(s string) (orgsyncv1.ExistingUserPolicy, error) {
	switch strings.ToLower(s) {
	case "", "adopt":
		return orgsyncv1.ExistingUserPolicy_EXISTING_USER_POLICY_ADOPT, nil
	case "skip":
		return orgsyncv1.ExistingUserPolicy_EXISTING_USER_POLICY_SKIP, nil
	case "fail":
		return orgsyncv1.ExistingUserPolicy_EXISTING_USER_POLICY_FAIL, nil
	}
	return 0, fmt.Errorf("--existing must be adopt, skip or fail, got %q", s)
}

// ParseEmailMap parses one --map-email TARGET=FROM_DOMAIN:TO_DOMAIN (or
// TARGET=TO_DOMAIN to rewrite any domain).
func ParseEmailMap(s string) (string, *orgsyncv1.EmailMapping, error) {
	target, rule, ok := strings.Cut(s, "=")
	if !ok || target == "" || rule == "" {
		return "", nil, fmt.Errorf("--map-email %q: want TARGET=FROM_DOMAIN:TO_DOMAIN or TARGET=TO_DOMAIN", s)
	}
	from, to, ok := strings.Cut(rule, ":")
	if !ok {
		from, to = "", rule
	}
	return target, &orgsyncv1.EmailMapping{FromDomain: from, ToDomain: to}, nil
}

// splitList splits comma-separated values, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
