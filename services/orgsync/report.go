package orgsync

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/orgsync/orgsync/pkg/events"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/integrator"
)

// Overall statuses of a Report.
const (
	ReportRunning   = "running"
	ReportSucceeded = "succeeded"
	ReportFailed    = "failed"
)

// Report is the job report of one clone request, folded from its events
// (stream EVENTS). It is what `orgsync clone --wait --output json` and
// `orgsync status ID --output json` print, so its JSON shape is a contract
// for scripts: add fields, never rename them.
type Report struct {
	RequestID string `json:"requestId"`
	SourceOrg string `json:"sourceOrg,omitempty"`
	// Status is "running", "succeeded" (every target done without failure)
	// or "failed" (the request, or at least one target, failed).
	Status string `json:"status"`
	// Reason of a request-level failure (bad payload, unknown org, ...).
	Reason string `json:"reason,omitempty"`
	// DryRun: the request was a dry run (`orgsync plan`); its targets and
	// users then carry their planned changes (plan_diff.go).
	DryRun bool `json:"dryRun,omitempty"`
	// Targets in the order of the request (then by org key for targets only
	// the events name).
	Targets []*TargetReport `json:"targets"`
	// APICalls sums the targets' calls (extraction calls are not included:
	// they belong to the source org).
	APICalls Usage `json:"apiCalls"`
	// CRM is the CRM integration sync counts of every user of each target
	// org (`orgsync status` only; the sync is decoupled from the request:
	// it never changes Status).
	CRM map[string]integrator.Counts `json:"crm,omitempty"`

	expected []string
	byOrg    map[string]*TargetReport
	failed   bool // a REQUEST event said FAILED
	// extracted: the source was read (the extractor's or the resolver's
	// REQUEST event); planned: targets the resolver handed to the provisioner.
	extracted bool
	planned   map[string]bool
	// steps interns step names: a report of 10,000 users × 20 targets holds
	// two million step rows, each naming one of a dozen steps.
	steps map[string]string
}

func (r *Report) intern(step string) string {
	if have, ok := r.steps[step]; ok {
		return have
	}
	if r.steps == nil {
		r.steps = map[string]string{}
	}
	r.steps[step] = step
	return step
}

// TargetReport is one target org's part of a Report.
type TargetReport struct {
	Org string `json:"org"`
	// Status: "pending" (no event yet), "running", "changed", "unchanged",
	// "planned" (dry run), "skipped", "failed", or "not started" (the
	// request was rejected before this target was worked on).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Phase is what is under way while the target is not final:
	// "extracting", "pre-flight", "provisioning", "provisioning: STEP"
	// (the step last finished for some user) or "verifying".
	Phase  string `json:"phase,omitempty"`
	PlanID string `json:"planId,omitempty"`
	// Done and Total users, as the provisioner reports progress.
	Done  int `json:"done"`
	Total int `json:"total"`
	// Users changed / unchanged / failed / skipped / planned.
	Counts   map[string]int `json:"counts"`
	APICalls Usage          `json:"apiCalls"`
	Users    []*UserReport  `json:"users"`
	// Changes: in a dry run, the shared resources (skill, language, team)
	// the clone would create in this target (plan_diff.go).
	Changes []Change `json:"changes,omitempty"`

	terminal     bool
	step         string // the step of the last STEP event
	targetCalls  *Usage // from the TARGET events, when all carry them
	usersByExtID map[string]*UserReport
	// userCounts and userCalls are the sums over Users, kept as user
	// events arrive (count/uncount) so that an event costs O(1), not
	// O(users): a 2,000-user request sends some 10 events per user.
	userCounts map[string]int
	userCalls  Usage
	// plans of the request for this org (several when the request was
	// extracted in parts), by plan id, and how many there are.
	plans map[string]*planPart
	parts int
}

// planPart is what one plan's events said about one target.
type planPart struct {
	total, done int
	status      string
	reason      string
	terminal    bool
	calls       *Usage
}

// part returns the state of plan id in t.
func (t *TargetReport) part(id string, parts int32) *planPart {
	if int(parts) > t.parts {
		t.parts = int(parts)
	}
	if p, ok := t.plans[id]; ok {
		return p
	}
	p := &planPart{}
	t.plans[id] = p
	if t.PlanID == "" {
		t.PlanID = id
	}
	return p
}

// statusRank orders final target statuses: the worst (most telling) wins
// when plans of one target end differently.
var statusRank = map[string]int{"failed": 5, "changed": 4, "planned": 3, "unchanged": 2, "skipped": 1}

// fold derives the target's progress and status from its plans: done when
// every plan (Event.plan_parts of them) reported a final status; the status
// is then the worst final status of any plan (failed > changed > planned >
// unchanged > skipped), with that plan's reason.
func (t *TargetReport) fold() {
	t.Total, t.Done = 0, 0
	var best, only *planPart
	final := 0
	var calls Usage
	allCalls := true
	for _, id := range sortedKeys(t.plans) {
		p := t.plans[id]
		only = p
		t.Total += p.total
		t.Done += p.done
		if !p.terminal {
			continue
		}
		final++
		if p.calls != nil {
			calls.add(*p.calls)
		} else {
			allCalls = false
		}
		if best == nil || statusRank[p.status] > statusRank[best.status] {
			best = p
		}
	}
	t.terminal = final > 0 && final == len(t.plans) && final >= max(t.parts, 1)
	shown := best
	switch {
	case t.terminal:
	case len(t.plans) == 1 && t.parts <= 1:
		shown = only // the one plan's own (running) status
	default:
		shown = &planPart{status: "running"} // some plans still to come
	}
	if shown != nil && shown.status != "" {
		t.Status = shown.status
	}
	if shown != nil && shown.reason != "" {
		t.Reason = shown.reason
	}
	t.targetCalls = nil
	if t.terminal && allCalls {
		t.targetCalls = &calls
	}
}

// UserReport is one user in one target.
type UserReport struct {
	ExternalID   string `json:"externalId"`
	TargetUserID string `json:"targetUserId,omitempty"`
	Status       string `json:"status"`
	Reason       string `json:"reason,omitempty"`
	// StepsApplied lists the steps that changed the target, in the order
	// they finished (none in a dry run: see Changes).
	StepsApplied []string     `json:"stepsApplied"`
	Steps        []StepReport `json:"steps"`
	APICalls     Usage        `json:"apiCalls"`
	Errors       []string     `json:"errors,omitempty"`
	// Changes: in a dry run, what the clone would change for this user,
	// field by field, against the target's actual state (plan_diff.go).
	Changes []Change `json:"changes,omitempty"`

	terminal bool
	planned  map[string][]Change // dry run: changes by step id
}

// StepReport is one step of a user plan.
type StepReport struct {
	Step   string `json:"step"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Usage counts Genesys API calls.
type Usage struct {
	Reads     int `json:"reads"`
	Writes    int `json:"writes"`
	Throttled int `json:"throttled"`
	Total     int `json:"total"`
}

func usageOf(u *orgsyncv1.ApiUsage) Usage {
	return Usage{Reads: int(u.GetReads()), Writes: int(u.GetWrites()), Throttled: int(u.GetThrottled()),
		Total: int(u.GetReads() + u.GetWrites())}
}

func (u *Usage) add(o Usage) {
	u.Reads += o.Reads
	u.Writes += o.Writes
	u.Throttled += o.Throttled
	u.Total += o.Total
}

func (u *Usage) sub(o Usage) {
	u.Reads -= o.Reads
	u.Writes -= o.Writes
	u.Throttled -= o.Throttled
	u.Total -= o.Total
}

// StatusName renders an event status for humans and JSON: "changed", "failed"...
func StatusName(s orgsyncv1.Status) string {
	if s == orgsyncv1.Status_STATUS_UNSPECIFIED {
		return "unknown"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

func isFinal(s orgsyncv1.Status) bool {
	return s != orgsyncv1.Status_STATUS_UNSPECIFIED && s != orgsyncv1.Status_STATUS_RUNNING
}

// NewReport starts the report of requestID. targets are the orgs the request
// names (may be empty when unknown: `status` learns them from the events);
// the report is complete once each of them reported a final TARGET event.
func NewReport(requestID, sourceOrg string, targets []string) *Report {
	r := &Report{RequestID: requestID, SourceOrg: sourceOrg, Status: ReportRunning, Targets: []*TargetReport{}, byOrg: map[string]*TargetReport{},
		planned: map[string]bool{}}
	for _, t := range targets {
		r.expected = append(r.expected, t)
		r.target(t)
	}
	r.summarize()
	return r
}

func (r *Report) target(org string) *TargetReport {
	if t, ok := r.byOrg[org]; ok {
		return t
	}
	t := &TargetReport{Org: org, Status: "pending", Counts: map[string]int{}, Users: []*UserReport{}, usersByExtID: map[string]*UserReport{}, userCounts: map[string]int{},
		plans: map[string]*planPart{}}
	r.byOrg[org] = t
	r.Targets = append(r.Targets, t)
	return t
}

// Target returns the report of org, or nil.
func (r *Report) Target(org string) *TargetReport { return r.byOrg[org] }

func (t *TargetReport) user(extID string) *UserReport {
	if u, ok := t.usersByExtID[extID]; ok {
		return u
	}
	u := &UserReport{ExternalID: extID, Status: "pending", StepsApplied: []string{}, Steps: []StepReport{}}
	t.usersByExtID[extID] = u
	t.Users = append(t.Users, u)
	return u
}

// User returns the report of the user with external id extID, or nil.
func (t *TargetReport) User(extID string) *UserReport { return t.usersByExtID[extID] }

// Apply folds one event into the report. Events of other requests are
// ignored. Applying the same event twice changes nothing, and a final
// status is never overwritten by a later "running" (a redelivered plan
// re-announces itself).
func (r *Report) Apply(e *orgsyncv1.Event) {
	if e.GetRequestId() != r.RequestID {
		return
	}
	if len(e.GetRows()) > 0 {
		// A batch (a phase's steps, a plan's users): its rows, each as
		// the event it stands for.
		for _, row := range events.Expand(e) {
			r.Apply(row)
		}
		return
	}
	if r.SourceOrg == "" {
		r.SourceOrg = e.GetSourceOrg()
	}
	if isDryRun(e) {
		r.DryRun = true
	}
	switch e.GetKind() {
	case orgsyncv1.EventKind_EVENT_KIND_REQUEST:
		r.extracted = true
		for _, t := range splitList(e.GetAttributes()[AttrPlannedTargets]) {
			r.planned[t] = true
		}
		if e.GetStatus() == orgsyncv1.Status_STATUS_FAILED {
			r.failed = true
			r.Reason = e.GetReason()
			if r.Reason == "" {
				r.Reason = e.GetMessage()
			}
		}
	case orgsyncv1.EventKind_EVENT_KIND_TARGET:
		t := r.target(e.GetOrg())
		p := t.part(e.GetPlanId(), e.GetPlanParts())
		p.progress(e)
		if p.terminal && !isFinal(e.GetStatus()) {
			t.fold()
			break
		}
		p.status = StatusName(e.GetStatus())
		p.terminal = isFinal(e.GetStatus())
		if e.GetReason() != "" {
			p.reason = e.GetReason()
		}
		if e.GetApiCalls() != nil && p.terminal {
			u := usageOf(e.GetApiCalls())
			p.calls = &u
		}
		if isDryRun(e) && p.terminal {
			t.notePlannedResources(e)
		}
		t.fold()
	case orgsyncv1.EventKind_EVENT_KIND_USER:
		t := r.target(e.GetOrg())
		u := t.user(e.GetUserExternalId())
		if e.GetTargetUserId() != "" {
			u.TargetUserID = e.GetTargetUserId()
		}
		t.part(e.GetPlanId(), e.GetPlanParts()).progress(e)
		t.fold()
		if u.terminal && !isFinal(e.GetStatus()) {
			return
		}
		t.uncount(u)
		u.Status = StatusName(e.GetStatus())
		u.terminal = isFinal(e.GetStatus())
		u.Reason = e.GetReason()
		if e.GetApiCalls() != nil {
			u.APICalls = usageOf(e.GetApiCalls())
		}
		if e.GetStatus() == orgsyncv1.Status_STATUS_FAILED && e.GetReason() != "" {
			u.addError("", e.GetReason())
		}
		t.count(u)
	case orgsyncv1.EventKind_EVENT_KIND_STEP:
		step := r.intern(e.GetStep())
		t := r.target(e.GetOrg())
		t.step = step
		if t.Status == "pending" {
			t.Status = "running" // its first step finished
		}
		u := t.user(e.GetUserExternalId())
		if e.GetTargetUserId() != "" && u.TargetUserID == "" {
			u.TargetUserID = e.GetTargetUserId()
		}
		var s *StepReport
		for i := range u.Steps {
			if u.Steps[i].Step == step {
				s = &u.Steps[i]
			}
		}
		if s == nil {
			u.Steps = append(u.Steps, StepReport{Step: step})
			s = &u.Steps[len(u.Steps)-1]
		}
		s.Status, s.Reason = StatusName(e.GetStatus()), e.GetReason()
		u.notePlanned(e)
		switch e.GetStatus() {
		case orgsyncv1.Status_STATUS_CHANGED:
			u.StepsApplied = appendUnique(u.StepsApplied, step)
		case orgsyncv1.Status_STATUS_FAILED:
			if e.GetReason() != "" {
				u.addError(step, e.GetReason())
			}
		}
	}
	if t := r.byOrg[e.GetOrg()]; t != nil {
		t.tally()
	}
	r.summarize()
}

// progress takes the plan's Done/Total from e when they move forward.
func (p *planPart) progress(e *orgsyncv1.Event) {
	if e.GetTotal() > 0 {
		p.total = int(e.GetTotal())
	}
	if int(e.GetDone()) > p.done {
		p.done = int(e.GetDone())
	}
}

// addError records a failure of u once. The provisioner reports a failed
// step twice: as the step (STEP event, reason R) and as the user's reason
// (USER event, "step S: R"); either may arrive first. The step's own
// wording wins.
func (u *UserReport) addError(step, reason string) {
	if step == "" {
		for _, s := range u.Steps {
			if s.Status == "failed" && s.Reason != "" && strings.HasSuffix(reason, s.Reason) {
				return // said by the step already
			}
		}
		u.Errors = appendUnique(u.Errors, reason)
		return
	}
	kept := u.Errors[:0]
	for _, e := range u.Errors {
		if !strings.HasSuffix(e, reason) {
			kept = append(kept, e)
		}
	}
	u.Errors = appendUnique(kept, "step "+step+": "+reason)
}

func appendUnique(list []string, s string) []string {
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}

// recompute derives every target's counts and the overall status.
func (r *Report) recompute() {
	for _, t := range r.Targets {
		t.tally()
	}
	r.summarize()
}

// count adds u to t's running sums; uncount takes it out again. Apply
// brackets every change of a user's status or calls with the two.
func (t *TargetReport) count(u *UserReport) {
	if u.terminal {
		t.userCounts[u.Status]++
	}
	t.userCalls.add(u.APICalls)
}

func (t *TargetReport) uncount(u *UserReport) {
	if u.terminal {
		if t.userCounts[u.Status]--; t.userCounts[u.Status] == 0 {
			delete(t.userCounts, u.Status)
		}
	}
	t.userCalls.sub(u.APICalls)
}

// tally derives t's user counts and API calls from the running sums (an
// event changes one target: Apply tallies only that one).
func (t *TargetReport) tally() {
	t.Counts = maps.Clone(t.userCounts)
	sum := t.userCalls
	t.APICalls = sum
	if t.targetCalls != nil && t.targetCalls.Total >= sum.Total {
		// The target's own count also covers shared resources (skills,
		// teams) ensured once for all users.
		t.APICalls = *t.targetCalls
	}
}

// summarize derives the report's calls and status from its targets.
func (r *Report) summarize() {
	r.APICalls = Usage{}
	anyFailed := r.failed
	for _, t := range r.Targets {
		r.APICalls.add(t.APICalls)
		if t.Status == "failed" {
			anyFailed = true
		}
		t.Phase = r.phase(t)
		if r.failed && !t.terminal && (t.Status == "pending" || t.Status == "not started") {
			t.Status, t.Reason = "not started", "request rejected (reason above)"
		}
	}
	switch {
	case r.failed:
		r.Status = ReportFailed
	case !r.Complete():
		r.Status = ReportRunning
	case anyFailed:
		r.Status = ReportFailed
	default:
		r.Status = ReportSucceeded
	}
}

// AttrPlannedTargets is the attribute of the resolver's REQUEST event that
// lists the targets it planned (comma-separated).
const AttrPlannedTargets = "planned_targets"

// phase says what is under way in t (see TargetReport.Phase).
func (r *Report) phase(t *TargetReport) string {
	switch {
	case t.terminal || r.failed:
		return ""
	case t.step == "verify":
		return phaseVerifying
	case t.step != "":
		return phaseProvisioning + ": " + t.step
	case r.planned[t.Org] || len(t.plans) > 0:
		return phaseProvisioning
	case r.extracted:
		return phasePreflight
	}
	return phaseExtracting
}

// Complete reports whether nothing more will happen: the request failed as a
// whole, or every expected target (at least one) reported a final status.
func (r *Report) Complete() bool {
	if r.failed {
		return true
	}
	orgs := r.expected
	if len(orgs) == 0 {
		for _, t := range r.Targets {
			orgs = append(orgs, t.Org)
		}
	}
	if len(orgs) == 0 {
		return false
	}
	for _, o := range orgs {
		if t := r.byOrg[o]; t == nil || !t.terminal {
			return false
		}
	}
	return true
}

// Failed reports whether the request or any target failed.
func (r *Report) Failed() bool { return r.Status == ReportFailed }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSummary writes the human summary: the overall outcome and a table
// with one row per target (status, users changed/unchanged/failed, API calls).
func (r *Report) WriteSummary(w io.Writer) error {
	fmt.Fprintf(w, "request %s: %s", r.RequestID, r.Status)
	if r.DryRun {
		fmt.Fprint(w, " (dry run: nothing written)")
	}
	fmt.Fprintln(w)
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", r.Reason)
	}
	if len(r.Targets) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSTATUS\tUSERS\tCHANGED\tUNCHANGED\tFAILED\tAPI CALLS (R/W)\tREASON")
	for _, t := range r.Targets {
		changed := t.Counts["changed"] + t.Counts["planned"]
		total := t.Total
		if total == 0 {
			total = len(t.Users)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d (%d/%d)\t%s\n", t.Org, t.Status, total, changed,
			t.Counts["unchanged"], t.Counts["failed"], t.APICalls.Total, t.APICalls.Reads, t.APICalls.Writes, oneLine(t.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range r.Targets {
		for _, u := range t.Users {
			for _, e := range u.Errors {
				fmt.Fprintf(w, "  %s %s: %s\n", t.Org, u.ExternalID, oneLine(e))
			}
		}
	}
	return r.writePlan(w)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// sortedTargets returns org keys in stable order (for watch output).
func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
