package orgsync

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
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
	// two million step rows, each naming one of a dozen steps; a row holds
	// the name's index.
	steps *stepNames
	users *userNums
	// rowHint is the most step rows a user has: a user's rows are
	// allocated at that size at once instead of grown by doubling (a
	// phase's batch adds a row to each user; the targets run the same
	// steps).
	rowHint int
}

// userNums numbers a report's users by external id (in the order first
// seen): a target finds its report of a user by number (userAt), not in a
// map of its own — one map for all targets instead of one per target, 54
// bytes per user and target. exts are the numbers' external ids, which
// the targets' reports of a user share.
type userNums struct {
	num  map[string]int32
	exts []string
}

func (n *userNums) of(ext string) int32 {
	if i, ok := n.num[ext]; ok {
		return i
	}
	i := int32(len(n.exts))
	n.exts = append(n.exts, ext)
	n.num[ext] = i
	return i
}

// stepNames is a report's table of step names (stepRow.step indexes it).
// A request's plans name a dozen steps (the resolver's step ids); past
// 65,535 names, the last entry stands for the rest.
type stepNames struct {
	names []string
	index map[string]uint16
}

// tooManySteps is the name of every step past a report's 65,535th.
const tooManySteps = "(more step names than a report holds)"

func (n *stepNames) of(step string) uint16 {
	if i, ok := n.index[step]; ok {
		return i
	}
	if len(n.names) == math.MaxUint16 {
		step = tooManySteps
	}
	if len(n.names) > math.MaxUint16 {
		return math.MaxUint16
	}
	i := uint16(len(n.names))
	n.names = append(n.names, step)
	n.index[step] = i
	return i
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

	terminal    bool
	step        string // the step of the last STEP event
	targetCalls *Usage // from the TARGET events, when all carry them
	// users are the report's user numbers; userAt[n] is 1 + the index in
	// Users of user number n (0: not in t).
	users  *userNums
	userAt []int32
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

// UserReport is one user in one target. It is held compact — a report of
// 10,000 users × 20 targets has 200,000 of them: its steps are rows of
// small integers (step name index, status, order applied), its target
// user id (a UUID) 16 bytes, its calls three int32, what few users have
// (reasons, errors, planned changes, an id not a UUID) apart, expanded
// only when asked for (Steps, StepsApplied, MarshalJSON...).
type UserReport struct {
	ExternalID string
	Status     string

	rows   []stepRow
	names  *stepNames
	more   *userMore // nil until the user or a step has a reason, the user an error, a planned change or a target user id not a UUID
	target uuid.UUID // the target user id when it is a UUID (targetIsUUID)
	calls  userCalls
	// terminal: Status is final; targetIsUUID: target holds the target
	// user id (else more does, if any).
	terminal, targetIsUUID bool
}

// userCalls is a user's Usage: its total is always reads + writes.
type userCalls struct{ reads, writes, throttled int32 }

// APICalls returns the Genesys API calls made for u.
func (u *UserReport) APICalls() Usage { return u.calls.usage() }

func callsOf(u *orgsyncv1.ApiUsage) userCalls {
	return userCalls{reads: u.GetReads(), writes: u.GetWrites(), throttled: u.GetThrottled()}
}

func (c userCalls) usage() Usage {
	return Usage{Reads: int(c.reads), Writes: int(c.writes), Throttled: int(c.throttled), Total: int(c.reads) + int(c.writes)}
}

// TargetUserID returns the id of u in the target org ("" until known).
func (u *UserReport) TargetUserID() string {
	switch {
	case u.targetIsUUID:
		return u.target.String()
	case u.more != nil:
		return u.more.targetUserID
	}
	return ""
}

func (u *UserReport) knowsTarget() bool {
	return u.targetIsUUID || u.more != nil && u.more.targetUserID != ""
}

// setTargetUserID takes id as u's target user id. A Genesys user id is a
// canonical lowercase UUID: held as its 16 bytes (it prints back the
// same), not as a 36-byte string of its own (48 on the heap) per user and
// target.
func (u *UserReport) setTargetUserID(id string) {
	if len(id) == 36 { // else not a UUID; uuid.Parse would say so with an allocated error
		if parsed, err := uuid.Parse(id); err == nil && id == strings.ToLower(id) {
			u.target, u.targetIsUUID = parsed, true
			if u.more != nil {
				u.more.targetUserID = ""
			}
			return
		}
	}
	u.targetIsUUID = false
	if id != "" || u.more != nil {
		u.extra().targetUserID = id
	}
}

// Reason returns why u ended as it did ("" mostly).
func (u *UserReport) Reason() string {
	if u.more == nil {
		return ""
	}
	return u.more.reason
}

func (u *UserReport) setReason(reason string) {
	if reason != "" || u.more != nil {
		u.extra().reason = reason
	}
}

// stepRow is one step of a user plan.
type stepRow struct {
	step uint16 // index in the report's stepNames
	// applied is 1 + the step's position in StepsApplied (the steps that
	// changed the target, in the order they did; past 254 of them, in the
	// order they first reported); 0: it changed nothing.
	applied uint8
	status  uint8 // an orgsyncv1.Status
}

// userMore is what few users have.
type userMore struct {
	reason       string
	targetUserID string            // when not a UUID
	reasons      map[uint16]string // of steps
	errors       []string
	changes      []Change
	planned      map[uint16][]Change // dry run: by step
}

func (u *UserReport) extra() *userMore {
	if u.more == nil {
		u.more = &userMore{}
	}
	return u.more
}

// userJSON is the JSON of a UserReport (a contract: see Report).
type userJSON struct {
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
}

// MarshalJSON writes u as userJSON.
func (u *UserReport) MarshalJSON() ([]byte, error) {
	return json.Marshal(userJSON{ExternalID: u.ExternalID, TargetUserID: u.TargetUserID(), Status: u.Status, Reason: u.Reason(),
		StepsApplied: u.StepsApplied(), Steps: u.Steps(), APICalls: u.APICalls(), Errors: u.Errors(), Changes: u.Changes()})
}

// UnmarshalJSON reads what MarshalJSON writes (a report read back from
// `--output json`).
func (u *UserReport) UnmarshalJSON(b []byte) error {
	var j userJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*u = UserReport{ExternalID: j.ExternalID, Status: j.Status, names: &stepNames{index: map[string]uint16{}},
		calls: userCalls{reads: int32(j.APICalls.Reads), writes: int32(j.APICalls.Writes), throttled: int32(j.APICalls.Throttled)}}
	u.terminal = isFinal(statusOf(j.Status))
	u.setTargetUserID(j.TargetUserID)
	u.setReason(j.Reason)
	for _, s := range j.Steps {
		step := u.names.of(s.Step)
		u.row(nil, step).status = uint8(statusOf(s.Status))
		u.setStepReason(step, s.Reason)
	}
	for i, name := range j.StepsApplied {
		u.row(nil, u.names.of(name)).applied = uint8(min(i+1, math.MaxUint8))
	}
	if len(j.Errors) > 0 || len(j.Changes) > 0 {
		u.extra().errors, u.extra().changes = j.Errors, j.Changes
	}
	return nil
}

// Errors returns what failed for u, each said once.
func (u *UserReport) Errors() []string {
	if u.more == nil {
		return nil
	}
	return u.more.errors
}

// Changes returns, in a dry run, what the clone would change for u.
func (u *UserReport) Changes() []Change {
	if u.more == nil {
		return nil
	}
	return u.more.changes
}

// Steps returns u's steps in the order they first reported.
func (u *UserReport) Steps() []StepReport {
	out := make([]StepReport, len(u.rows))
	for i, s := range u.rows {
		out[i] = StepReport{Step: u.names.names[s.step], Status: StatusName(orgsyncv1.Status(s.status)), Reason: u.stepReason(s.step)}
	}
	return out
}

// StepsApplied returns the steps that changed the target, in the order
// they did (none in a dry run: see Changes).
func (u *UserReport) StepsApplied() []string {
	applied := make([]stepRow, 0, len(u.rows))
	for _, s := range u.rows {
		if s.applied > 0 {
			applied = append(applied, s)
		}
	}
	slices.SortStableFunc(applied, func(a, b stepRow) int { return int(a.applied) - int(b.applied) })
	out := make([]string, len(applied))
	for i, s := range applied {
		out[i] = u.names.names[s.step]
	}
	return out
}

// applied counts u's steps that changed the target.
func (u *UserReport) applied() int {
	n := 0
	for _, s := range u.rows {
		if s.applied > 0 {
			n++
		}
	}
	return n
}

func (u *UserReport) stepReason(step uint16) string {
	if u.more == nil {
		return ""
	}
	return u.more.reasons[step]
}

func (u *UserReport) setStepReason(step uint16, reason string) {
	switch {
	case reason != "":
		m := u.extra()
		if m.reasons == nil {
			m.reasons = map[uint16]string{}
		}
		m.reasons[step] = reason
	case u.more != nil:
		delete(u.more.reasons, step)
	}
}

// row returns u's row of step, added when new (with room for as many rows
// as the fullest user has, when hint, the most so far, is given).
func (u *UserReport) row(hint *int, step uint16) *stepRow {
	for i := range u.rows {
		if u.rows[i].step == step {
			return &u.rows[i]
		}
	}
	if u.rows == nil && hint != nil {
		u.rows = make([]stepRow, 0, max(*hint, 1))
	}
	u.rows = append(u.rows, stepRow{step: step})
	if hint != nil {
		*hint = max(*hint, len(u.rows))
	}
	return &u.rows[len(u.rows)-1]
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

func usageOf(u *orgsyncv1.ApiUsage) Usage { return callsOf(u).usage() }

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
	if name, ok := statusNames[s]; ok {
		return name
	}
	return statusName(s)
}

func statusName(s orgsyncv1.Status) string {
	if s == orgsyncv1.Status_STATUS_UNSPECIFIED {
		return "unknown"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

// statusNames holds the name of every known status, so that a report's
// 200,000 users share a dozen strings; statusByName is its inverse.
var statusNames, statusByName = func() (map[orgsyncv1.Status]string, map[string]orgsyncv1.Status) {
	m, inv := map[orgsyncv1.Status]string{}, map[string]orgsyncv1.Status{}
	for v := range orgsyncv1.Status_name {
		m[orgsyncv1.Status(v)] = statusName(orgsyncv1.Status(v))
		inv[m[orgsyncv1.Status(v)]] = orgsyncv1.Status(v)
	}
	return m, inv
}()

// statusOf is the status StatusName names (unspecified when none).
func statusOf(name string) orgsyncv1.Status { return statusByName[name] }

func isFinal(s orgsyncv1.Status) bool {
	return s != orgsyncv1.Status_STATUS_UNSPECIFIED && s != orgsyncv1.Status_STATUS_RUNNING
}

// NewReport starts the report of requestID. targets are the orgs the request
// names (may be empty when unknown: `status` learns them from the events);
// the report is complete once each of them reported a final TARGET event.
func NewReport(requestID, sourceOrg string, targets []string) *Report {
	r := &Report{RequestID: requestID, SourceOrg: sourceOrg, Status: ReportRunning, Targets: []*TargetReport{}, byOrg: map[string]*TargetReport{},
		planned: map[string]bool{}, steps: &stepNames{index: map[string]uint16{}},
		users: &userNums{num: map[string]int32{}}}
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
	t := &TargetReport{Org: org, Status: "pending", Counts: map[string]int{}, Users: []*UserReport{}, users: r.users, userCounts: map[string]int{},
		plans: map[string]*planPart{}}
	r.byOrg[org] = t
	r.Targets = append(r.Targets, t)
	return t
}

// Target returns the report of org, or nil.
func (r *Report) Target(org string) *TargetReport { return r.byOrg[org] }

func (r *Report) user(t *TargetReport, extID string) *UserReport {
	if u := t.User(extID); u != nil {
		return u
	}
	n := r.users.of(extID)
	if grow := int(n) + 1 - len(t.userAt); grow > 0 {
		t.userAt = append(t.userAt, make([]int32, grow)...)
	}
	u := &UserReport{ExternalID: r.users.exts[n], Status: "pending", names: r.steps}
	t.Users = append(t.Users, u)
	t.userAt[n] = int32(len(t.Users))
	return u
}

// User returns the report of the user with external id extID, or nil.
func (t *TargetReport) User(extID string) *UserReport {
	if t.users == nil {
		return nil // read back from JSON
	}
	n, ok := t.users.num[extID]
	if !ok || int(n) >= len(t.userAt) || t.userAt[n] == 0 {
		return nil
	}
	return t.Users[t.userAt[n]-1]
}

// Apply folds one event into the report. Events of other requests are
// ignored. Applying the same event twice changes nothing, and a final
// status is never overwritten by a later "running" (a redelivered plan
// re-announces itself).
func (r *Report) Apply(e *orgsyncv1.Event) {
	if e.GetRequestId() != r.RequestID {
		return
	}
	if r.SourceOrg == "" {
		r.SourceOrg = e.GetSourceOrg()
	}
	rows := e.GetRows()
	if len(rows) == 0 {
		r.applyRow(e, e)
	}
	// A batch (a phase's steps, a plan's users): each row is the event it
	// stands for, read through the batch's envelope (events.Expand's
	// rules) without completing it into one.
	for _, row := range rows {
		r.applyRow(e, row)
	}
	if t := r.byOrg[e.GetOrg()]; t != nil {
		if k := e.GetKind(); k == orgsyncv1.EventKind_EVENT_KIND_TARGET || k == orgsyncv1.EventKind_EVENT_KIND_USER {
			t.fold() // once per event: it derives from the plans alone
		}
		t.tally()
	}
	r.summarize()
}

// applyRow folds row, an event or a row of batch env: the envelope (kind,
// request, plan, org, plan parts, attributes the row lacks) is env's.
func (r *Report) applyRow(env, row *orgsyncv1.Event) {
	if isDryRun(env, row) {
		r.DryRun = true
	}
	status := row.GetStatus()
	switch env.GetKind() {
	case orgsyncv1.EventKind_EVENT_KIND_REQUEST:
		r.extracted = true
		for _, t := range splitList(attr(env, row, AttrPlannedTargets)) {
			r.planned[t] = true
		}
		if status == orgsyncv1.Status_STATUS_FAILED {
			r.failed = true
			r.Reason = row.GetReason()
			if r.Reason == "" {
				r.Reason = row.GetMessage()
			}
		}
	case orgsyncv1.EventKind_EVENT_KIND_TARGET:
		t := r.target(env.GetOrg())
		p := t.part(env.GetPlanId(), env.GetPlanParts())
		p.progress(row)
		if p.terminal && !isFinal(status) {
			return
		}
		p.status = StatusName(status)
		p.terminal = isFinal(status)
		if row.GetReason() != "" {
			p.reason = row.GetReason()
		}
		if row.GetApiCalls() != nil && p.terminal {
			u := usageOf(row.GetApiCalls())
			p.calls = &u
		}
		if isDryRun(env, row) && p.terminal {
			t.notePlannedResources(row)
		}
	case orgsyncv1.EventKind_EVENT_KIND_USER:
		t := r.target(env.GetOrg())
		u := r.user(t, row.GetUserExternalId())
		if id := row.GetTargetUserId(); id != "" {
			u.setTargetUserID(id)
		}
		t.part(env.GetPlanId(), env.GetPlanParts()).progress(row)
		if u.terminal && !isFinal(status) {
			return
		}
		t.uncount(u)
		u.Status = StatusName(status)
		u.terminal = isFinal(status)
		u.setReason(row.GetReason())
		if c := row.GetApiCalls(); c != nil {
			u.calls = callsOf(c)
		}
		if status == orgsyncv1.Status_STATUS_FAILED && row.GetReason() != "" {
			u.addError("", row.GetReason())
		}
		t.count(u)
	case orgsyncv1.EventKind_EVENT_KIND_STEP:
		step := r.steps.of(row.GetStep())
		t := r.target(env.GetOrg())
		t.step = r.steps.names[step]
		if t.Status == "pending" {
			t.Status = "running" // its first step finished
		}
		u := r.user(t, row.GetUserExternalId())
		if id := row.GetTargetUserId(); id != "" && !u.knowsTarget() {
			u.setTargetUserID(id)
		}
		s := u.row(&r.rowHint, step)
		s.status = 0 // unknown: a status out of a row's range
		if status >= 0 && status <= math.MaxUint8 {
			s.status = uint8(status)
		}
		u.setStepReason(step, row.GetReason())
		u.notePlanned(step, row)
		switch status {
		case orgsyncv1.Status_STATUS_CHANGED:
			if s.applied == 0 {
				s.applied = uint8(min(u.applied()+1, math.MaxUint8))
			}
		case orgsyncv1.Status_STATUS_FAILED:
			if row.GetReason() != "" {
				u.addError(t.step, row.GetReason())
			}
		}
	}
}

// attr is row's attribute key, or its batch's (events.Expand's rule).
func attr(env, row *orgsyncv1.Event, key string) string {
	if v, own := row.GetAttributes()[key]; own {
		return v
	}
	return env.GetAttributes()[key]
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
		for _, s := range u.rows {
			if said := u.stepReason(s.step); s.status == uint8(orgsyncv1.Status_STATUS_FAILED) && said != "" && strings.HasSuffix(reason, said) {
				return // said by the step already
			}
		}
		m := u.extra()
		m.errors = appendUnique(m.errors, reason)
		return
	}
	m := u.extra()
	kept := m.errors[:0]
	for _, e := range m.errors {
		if !strings.HasSuffix(e, reason) {
			kept = append(kept, e)
		}
	}
	m.errors = appendUnique(kept, "step "+step+": "+reason)
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
	t.userCalls.add(u.APICalls())
}

func (t *TargetReport) uncount(u *UserReport) {
	if u.terminal {
		if t.userCounts[u.Status]--; t.userCounts[u.Status] == 0 {
			delete(t.userCounts, u.Status)
		}
	}
	t.userCalls.sub(u.APICalls())
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
			t.Status, t.Reason = "not started", "request rejected" // the request's reason says why, once
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
		if p, ok := strings.CutPrefix(t.Phase, phaseProvisioning+": "); ok && p == t.step {
			return t.Phase // as before: summarize runs per event
		}
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
		skipped := 0
		for _, u := range t.Users {
			for _, e := range u.Errors() {
				fmt.Fprintf(w, "  %s %s: %s\n", t.Org, u.ExternalID, oneLine(e))
			}
			// The table has no column for them: a user left alone is
			// said, with why (e.g. stale: an older source version).
			if u.Status == StatusName(orgsyncv1.Status_STATUS_SKIPPED) {
				if skipped++; skipped <= skippedShown {
					fmt.Fprintf(w, "  %s %s: skipped: %s\n", t.Org, u.ExternalID, oneLine(u.Reason()))
				}
			}
		}
		if more := skipped - skippedShown; more > 0 {
			fmt.Fprintf(w, "  %s: %d more user(s) skipped (--output json lists them)\n", t.Org, more)
		}
	}
	return r.writePlan(w)
}

// skippedShown is how many skipped users of a target the summary names.
const skippedShown = 20

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
