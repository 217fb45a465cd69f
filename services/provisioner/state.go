package provisioner

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/orgsync/orgsync/pkg/component"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// How a user was found (userRun.found).
const (
	foundJournal     = "journal"     // an earlier attempt of this plan
	foundTranslation = "translation" // bbolt id translation
	foundExternalID  = "external-id" // GET /users/externalid/orgsync/<ext>
	foundEmail       = "email"       // same-email user orgsync did not stamp (adopted)
	foundCreated     = "created"     // created by this attempt
	foundNew         = "new"         // dry run: would be created
)

// userRun is the state of one user within one Apply.
type userRun struct {
	up    *orgsyncv1.UserPlan
	d     *orgsyncv1.UserConfig // desired, source terms (email mapped)
	ext   string
	steps map[orgsyncv1.StepKind]string // step kind → step id

	id       string        // target user id
	user     *genesys.User // latest known representation in the target
	found    string
	baseline *orgsyncv1.UserConfig // last applied configuration (nil: none)
	act      actual
	dx       deltaState // delta and drift bookkeeping (delta.go)
	// doubt: the baseline is not what the user holds — an id its steps used
	// was stale, or the user read back contradicts it (heal.go) — so it is
	// not taken on trust.
	doubt bool

	mu      sync.Mutex
	status  map[string]orgsyncv1.Status
	failed  error  // permanent: the user is done, FAILED
	retry   error  // transient: resume on redelivery
	skipped string // policy: the user is left alone (reason)
	// stale: the plan carries an older source configuration than the one
	// applied (staleReason). The user is skipped unless ENSURE_USER finds
	// the target user gone: then nothing is rolled back (ensureUsers).
	stale string
	// audits are the AUDIT events of this user's current phase (phone
	// decisions), sent with the phase's STEP event (finishSteps).
	audits []*orgsyncv1.Event
}

func newUserRun(up *orgsyncv1.UserPlan) *userRun {
	u := &userRun{up: up, d: up.GetDesired(), ext: up.GetDesired().GetExternalId(),
		steps: map[orgsyncv1.StepKind]string{}, status: map[string]orgsyncv1.Status{}}
	for _, s := range up.GetSteps() {
		u.steps[s.GetKind()] = s.GetId()
	}
	return u
}

func (u *userRun) alive() bool { return u.failed == nil && u.retry == nil && u.skipped == "" }

func (u *userRun) setStatus(step string, s orgsyncv1.Status) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.status[step] = s
}

func (u *userRun) stepStatus() map[string]orgsyncv1.Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return maps.Clone(u.status)
}

// changed reports whether a step of u changed the target; planned, whether
// a step of u's dry run would.
func (u *userRun) changed() bool { return u.anyStep(orgsyncv1.Status_STATUS_CHANGED) }
func (u *userRun) planned() bool { return u.anyStep(orgsyncv1.Status_STATUS_PLANNED) }

func (u *userRun) anyStep(status orgsyncv1.Status) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.status {
		if s == status {
			return true
		}
	}
	return false
}

func (u *userRun) included(c orgsyncv1.Component) bool {
	return component.Included(u.up.GetInclude(), c)
}

// baselineHeld reports whether what the baseline names may be taken as held
// by the user instead of read back: orgsync applied it to this very user
// (found by translation, so the baseline is about it), no sweep asks for a
// read, and nothing says the user lost it since (doubt).
func (u *userRun) baselineHeld() bool {
	return u.baseline != nil && !u.dx.verify && !u.doubt && (u.found == foundTranslation || u.found == foundJournal)
}

// trusted reports whether the user's component may be taken from the
// baseline: baselineHeld, and the desired value is the applied one (same).
func (u *userRun) trusted(same func(a, b *orgsyncv1.UserConfig) bool) bool {
	return u.baselineHeld() && same(u.baseline, u.d)
}

// actual is what the target holds for a user, as far as known. A nil map
// (or known=false) means "not read yet".
type actual struct {
	skills    map[string]float64 // skill id → proficiency
	languages map[string]float64
	teamID    string
	teamKnown bool
	licenses  map[string]bool
	grants    map[genesys.RoleDivision]bool
	util      *genesys.Utilization // agent-level utilization, nil = org level
	utilKnown bool
	queues    map[string]bool // nil: unknown
}

// fresh is the actual state of a user that was just created: nothing.
func fresh() actual {
	return actual{skills: map[string]float64{}, languages: map[string]float64{}, teamKnown: true,
		licenses: map[string]bool{}, grants: map[genesys.RoleDivision]bool{}, utilKnown: true, queues: map[string]bool{}}
}

// fromUser takes what an expanded user representation says. Expands are
// best effort in Genesys: skills/languages count as known only when the
// field came back, and the team only when skills did (the expand worked).
func fromUser(gu *genesys.User) actual {
	var a actual
	if gu.Skills != nil {
		a.skills = map[string]float64{}
		for _, s := range gu.Skills {
			a.skills[s.ID] = s.Proficiency
		}
		a.teamKnown = true
		if gu.Team != nil {
			a.teamID = gu.Team.ID
		}
	}
	if gu.Languages != nil {
		a.languages = map[string]float64{}
		for _, l := range gu.Languages {
			a.languages[l.ID] = l.Proficiency
		}
	}
	return a
}

// userExpand is what every user read asks for.
var userExpand = []string{"skills", "languages", "team"}

// ---- desired state in target terms, and its difference to the actual ----

// wantProficiencies translates skill or language refs into target ids.
func (r *run) wantProficiencies(ps []*orgsyncv1.Proficiency) (map[string]float64, error) {
	out := map[string]float64{}
	for _, p := range ps {
		id := r.id(p.GetRef())
		if id == "" {
			return nil, failUser("reference %s is not resolved in %s", p.GetRef(), r.org)
		}
		out[id] = p.GetProficiency()
	}
	return out, nil
}

// proficiencyDiffs lists the differences of two id → proficiency maps,
// naming ids by the resource names of the plan where known.
func (r *run) proficiencyDiffs(field string, want, got map[string]float64) []*orgsyncv1.FieldDiff {
	var out []*orgsyncv1.FieldDiff
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			d := &orgsyncv1.FieldDiff{Field: fmt.Sprintf("%s[%s]", field, r.nameOf(id)), Want: fmtProf(w)}
			if ok {
				d.Got = fmtProf(g)
			}
			out = append(out, d)
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			out = append(out, &orgsyncv1.FieldDiff{Field: fmt.Sprintf("%s[%s]", field, r.nameOf(id)), Got: fmtProf(g)})
		}
	}
	sortDiffs(out)
	return out
}

func fmtProf(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func sortDiffs(d []*orgsyncv1.FieldDiff) {
	sort.Slice(d, func(i, j int) bool { return d[i].Field < d[j].Field })
}

// nameOf names a target id by the plan resource it translates (else the id).
func (r *run) nameOf(id string) string {
	r.idsMu.Lock()
	defer r.idsMu.Unlock()
	if ext, ok := r.exts[id]; ok {
		if res := r.resources[ext]; res != nil {
			return res.GetName()
		}
		return refName(ext) // a baseline reference the plan no longer has
	}
	return id
}

// wantUtilization converts the desired agent utilization (nil: org default).
func wantUtilization(u *orgsyncv1.Utilization) *genesys.Utilization {
	if u == nil || len(u.GetMedia()) == 0 {
		return nil
	}
	out := &genesys.Utilization{Utilization: map[string]genesys.MediaUtilization{}}
	for _, m := range u.GetMedia() {
		it := slices.Clone(m.GetInterruptibleMediaTypes())
		slices.Sort(it)
		out.Utilization[m.GetMediaType()] = genesys.MediaUtilization{MaximumCapacity: int(m.GetMaximumCapacity()),
			InterruptableMediaTypes: it, IncludeNonAcd: m.GetIncludeNonAcd()}
	}
	return out
}

// utilizationDiffs compares desired with actual agent-level utilization.
func utilizationDiffs(want, got *genesys.Utilization) []*orgsyncv1.FieldDiff {
	var out []*orgsyncv1.FieldDiff
	render := func(m genesys.MediaUtilization, ok bool) string {
		if !ok {
			return ""
		}
		it := slices.Clone(m.InterruptableMediaTypes)
		slices.Sort(it)
		return fmt.Sprintf("max=%d interruptible=%s nonAcd=%t", m.MaximumCapacity, strings.Join(it, ","), m.IncludeNonAcd)
	}
	var wm, gm map[string]genesys.MediaUtilization
	if want != nil {
		wm = want.Utilization
	}
	if got != nil {
		gm = got.Utilization
	}
	keys := map[string]bool{}
	for k := range wm {
		keys[k] = true
	}
	for k := range gm {
		keys[k] = true
	}
	for k := range keys {
		w, wok := wm[k]
		g, gok := gm[k]
		if ws, gs := render(w, wok), render(g, gok); ws != gs {
			out = append(out, &orgsyncv1.FieldDiff{Field: "utilization." + k, Want: ws, Got: gs})
		}
	}
	sortDiffs(out)
	return out
}

// sameRefs compares two lists of references as sets.
func sameRefs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
