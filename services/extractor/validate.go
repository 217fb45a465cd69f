package extractor

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/orgsync/orgsync/pkg/emailmap"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// requestIDPattern is the request id contract of CloneRequest.request_id.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidRequestID reports whether id satisfies the CloneRequest contract.
func ValidRequestID(id string) bool { return requestIDPattern.MatchString(id) }

// changeEventIDPattern is the contract of ChangeEvent.event_id: audit ids and
// the reconciler's sweep ids ("sweep:<src>:<run>:<user>") also use ':' and '.'.
var changeEventIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,200}$`)

// ValidChangeEventID reports whether id satisfies the ChangeEvent contract.
func ValidChangeEventID(id string) bool { return changeEventIDPattern.MatchString(id) }

// validated is a clone request that passed validation: targets sorted and
// without duplicates.
type validated struct {
	req     *orgsyncv1.CloneRequest
	src     string
	targets []string
}

// validateRequest checks everything about a clone request that needs no API
// call: ids, orgs known to clients, selectors, options. subjectOrg is the org
// token of the subject the request arrived on. Every problem found is
// reported, so a caller fixes the request in one go. The errors are
// permanent: the same request can never succeed.
func validateRequest(req *orgsyncv1.CloneRequest, subjectOrg string, clients orgs.Clients) (*validated, error) {
	var errs []error
	if req.GetRequestId() == "" {
		errs = append(errs, errors.New("request_id is missing"))
	} else if !ValidRequestID(req.GetRequestId()) {
		errs = append(errs, fmt.Errorf("request_id %q is invalid (want 1..128 of [A-Za-z0-9_-])", truncate(req.GetRequestId(), 140)))
	}
	src := req.GetSourceOrg()
	switch {
	case src == "":
		errs = append(errs, errors.New("source_org is missing"))
	case natsx.ValidateOrgKey(src) != nil:
		errs = append(errs, fmt.Errorf("source_org: %w", natsx.ValidateOrgKey(src)))
	case subjectOrg != "" && src != subjectOrg:
		errs = append(errs, fmt.Errorf("source_org %q does not match the subject's org %q", src, subjectOrg))
	default:
		if _, err := clients.Client(src); err != nil {
			errs = append(errs, fmt.Errorf("source org %q: %w", src, clientErr(err)))
		}
	}

	var targets, unknown []string
	seen := map[string]bool{}
	for _, t := range req.GetTargetOrgs() {
		if seen[t] {
			continue
		}
		seen[t] = true
		switch {
		case natsx.ValidateOrgKey(t) != nil:
			errs = append(errs, fmt.Errorf("target org: %w", natsx.ValidateOrgKey(t)))
		case t == src:
			errs = append(errs, fmt.Errorf("target org %q is the source org", t))
		default:
			if _, err := clients.Client(t); err != nil {
				if errors.Is(err, orgs.ErrUnknownOrg) {
					unknown = append(unknown, t)
				} else {
					errs = append(errs, fmt.Errorf("target org %q: %w", t, err))
				}
				continue
			}
			targets = append(targets, t)
		}
	}
	if len(unknown) > 0 {
		errs = append(errs, fmt.Errorf("unknown target org(s): %s", strings.Join(unknown, ", ")))
	}
	if len(req.GetTargetOrgs()) == 0 {
		errs = append(errs, errors.New("no target orgs"))
	}
	sort.Strings(targets)

	if len(req.GetUsers()) == 0 {
		errs = append(errs, errors.New("no users"))
	}
	for i, sel := range req.GetUsers() {
		switch {
		case sel.GetUserId() == "" && sel.GetEmail() == "":
			errs = append(errs, fmt.Errorf("users[%d]: empty selector (set user_id or email)", i))
		case sel.GetEmail() != "" && !strings.Contains(sel.GetEmail(), "@"):
			errs = append(errs, fmt.Errorf("users[%d]: email %q is not an email address", i, sel.GetEmail()))
		}
	}

	opts := req.GetOptions()
	for _, c := range opts.GetInclude() {
		if _, ok := orgsyncv1.Component_name[int32(c)]; !ok || c == orgsyncv1.Component_COMPONENT_UNSPECIFIED {
			errs = append(errs, fmt.Errorf("options.include: invalid component %d", int32(c)))
		}
	}
	if p := opts.GetExistingUsers(); orgsyncv1.ExistingUserPolicy_name[int32(p)] == "" {
		errs = append(errs, fmt.Errorf("options.existing_users: invalid policy %d", int32(p)))
	}
	mappingTargets := make([]string, 0, len(opts.GetEmailMapping()))
	for t := range opts.GetEmailMapping() {
		mappingTargets = append(mappingTargets, t)
	}
	sort.Strings(mappingTargets)
	for _, t := range mappingTargets {
		if !seen[t] {
			errs = append(errs, fmt.Errorf("options.email_mapping names %q, which is not a target of the request", t))
			continue
		}
		if err := emailmap.Validate(opts.GetEmailMapping()[t]); err != nil {
			errs = append(errs, fmt.Errorf("options.email_mapping[%s]: %w", t, err))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid clone request: %w", joinErrors(errs))
	}
	return &validated{req: req, src: src, targets: targets}, nil
}

// clientErr shortens an unknown-org error of the registry to its essence.
func clientErr(err error) error {
	if errors.Is(err, orgs.ErrUnknownOrg) {
		return orgs.ErrUnknownOrg
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// joinedErrors joins errors on one line ("a; b"), keeping them for errors.Is.
type joinedErrors []error

func (j joinedErrors) Error() string {
	parts := make([]string, len(j))
	for i, e := range j {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (j joinedErrors) Unwrap() []error { return j }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return joinedErrors(errs)
}
