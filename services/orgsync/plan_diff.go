package orgsync

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/orgsync/orgsync/pkg/extid"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/provisioner"
)

// The planned changes of a dry run (`orgsync plan`), as `terraform plan`
// shows them. The provisioner's dry run compares the plan with what the
// target actually holds (it reads every component back, as a drift sweep
// does) and reports each difference as a FieldDiff on the step that would
// write it (want: the value the clone would set, got: the target's current
// value); the shared resources it would create are FieldDiffs on the TARGET
// event (field: the resource type, want: its name). The report turns them
// into Changes.

// Change operations (Change.Op).
const (
	OpCreate = "create" // text "+": a user, a shared resource, or a value the target lacks
	OpUpdate = "update" // text "~": a value that differs (old → new)
	OpRemove = "remove" // text "-": a value the clone would take away
)

// Change is one difference a dry run found. Its JSON is part of the
// report's contract:
//
//	{"op": "update", "resource": "profile", "field": "title", "old": "Lead", "new": "Agent"}
//
// Resource is what the field belongs to: user (the user itself; field
// "email"), profile (name, title, department, manager), skill, language,
// utilization, grant, queue, team, license, phone, externalId; for a shared
// resource of the target (TargetReport.Changes): skill, language or team,
// with field "name". Field is the provisioner's field path, e.g.
// "skills[Billing Support]" or "queues[Support]"; Old is the target's
// current value ("" = absent), New the value the clone would set ("" =
// removed).
type Change struct {
	Op       string `json:"op"`
	Resource string `json:"resource"`
	Field    string `json:"field"`
	Old      string `json:"old,omitempty"`
	New      string `json:"new,omitempty"`
}

// changeOf reads a FieldDiff of a user step.
func changeOf(d *orgsyncv1.FieldDiff) Change {
	c := Change{Field: d.GetField(), Old: d.GetGot(), New: d.GetWant(), Resource: resourceOf(d.GetField())}
	if c.Field == "user" {
		c.Field = "email"
	}
	switch {
	case c.Old == "" && c.New != "":
		c.Op = OpCreate
	case c.New == "" && c.Old != "":
		c.Op = OpRemove
	default:
		c.Op = OpUpdate
	}
	return c
}

// resourceOf names what a provisioner field path belongs to.
func resourceOf(field string) string {
	head := field
	if i := strings.IndexAny(head, "[."); i >= 0 {
		head = head[:i]
	}
	switch head {
	case "name", "title", "department", "manager":
		return "profile"
	case "skills":
		return "skill"
	case "languages":
		return "language"
	case "grants":
		return "grant"
	case "queues":
		return "queue"
	case "licenses":
		return "license"
	case "addresses":
		return "phone"
	}
	return head // user, team, utilization, externalId
}

// isDryRun reports whether row (an event, or a row of batch env) belongs
// to a dry run.
func isDryRun(env, row *orgsyncv1.Event) bool {
	return attr(env, row, provisioner.DryRunAttribute) == "true" || row.GetStatus() == orgsyncv1.Status_STATUS_PLANNED
}

// notePlanned takes the planned changes of a STEP event of u (replacing
// what an earlier delivery of the same step said).
func (u *UserReport) notePlanned(step uint16, e *orgsyncv1.Event) {
	if e.GetStatus() != orgsyncv1.Status_STATUS_PLANNED {
		if u.more == nil {
			return
		}
		if _, had := u.more.planned[step]; !had {
			return
		}
		delete(u.more.planned, step)
	} else {
		m := u.extra()
		if m.planned == nil {
			m.planned = map[uint16][]Change{}
		}
		changes := make([]Change, len(e.GetDiffs()))
		for i, d := range e.GetDiffs() {
			changes[i] = changeOf(d)
		}
		m.planned[step] = changes
	}
	// In step order (the order the steps reported first).
	u.more.changes = nil
	for _, s := range u.rows {
		u.more.changes = append(u.more.changes, u.more.planned[s.step]...)
	}
}

// notePlannedResources takes the shared resources a dry-run plan of t
// would create (its TARGET event).
func (t *TargetReport) notePlannedResources(e *orgsyncv1.Event) {
	if len(e.GetDiffs()) == 0 {
		return
	}
	for _, d := range e.GetDiffs() {
		c := Change{Op: OpCreate, Resource: d.GetField(), Field: "name", New: d.GetWant()}
		if !hasChangeOf(t.Changes, c) {
			t.Changes = append(t.Changes, c)
		}
	}
	sort.SliceStable(t.Changes, func(i, j int) bool {
		if t.Changes[i].Resource != t.Changes[j].Resource {
			return t.Changes[i].Resource < t.Changes[j].Resource
		}
		return t.Changes[i].New < t.Changes[j].New
	})
}

func hasChangeOf(list []Change, c Change) bool {
	for _, have := range list {
		if have == c {
			return true
		}
	}
	return false
}

// creates reports whether u would be created.
func (u *UserReport) creates() bool {
	for _, c := range u.Changes() {
		if c.Resource == "user" && c.Op == OpCreate {
			return true
		}
	}
	return false
}

// writePlan writes the planned changes of a dry run, per target: the
// shared resources to create, then each user that would change with its
// fields — "+" create, "~" update (old → new), "-" removal. A target in
// sync says "no changes".
func (r *Report) writePlan(w io.Writer) error {
	if !r.DryRun {
		return nil
	}
	for _, t := range r.Targets {
		var create, change, same, skipped int
		for _, u := range t.Users {
			switch {
			case u.creates():
				create++
			case len(u.Changes()) > 0 || u.Status == "planned":
				change++
			case u.Status == "unchanged":
				same++
			case u.Status == StatusName(orgsyncv1.Status_STATUS_SKIPPED):
				skipped++
			}
		}
		skippedText := ""
		if skipped > 0 {
			skippedText = fmt.Sprintf(", %d skipped (why: above)", skipped)
		}
		var parts []string
		if n := len(t.Changes); n > 0 {
			parts = append(parts, fmt.Sprintf("%d shared resource(s) to create", n))
		}
		if create > 0 {
			parts = append(parts, fmt.Sprintf("%d user(s) to create", create))
		}
		if change > 0 {
			parts = append(parts, fmt.Sprintf("%d user(s) to change", change))
		}
		switch {
		case len(parts) > 0:
			fmt.Fprintf(w, "\nplan for %s: %s, %d unchanged%s\n", t.Org, strings.Join(parts, ", "), same, skippedText)
		case t.Status == "unchanged":
			fmt.Fprintf(w, "\nplan for %s: no changes (%d user(s) unchanged%s)\n", t.Org, same, skippedText)
		default:
			fmt.Fprintf(w, "\nplan for %s: %s\n", t.Org, t.Status)
		}
		for _, c := range t.Changes {
			fmt.Fprintf(w, "  + %s %s\n", c.Resource, strconv.Quote(c.New))
		}
		for _, u := range t.Users {
			if len(u.Changes()) == 0 && u.Status != "planned" {
				continue
			}
			mark := "~"
			if u.creates() {
				mark = "+"
			}
			fmt.Fprintf(w, "  %s user %s\n", mark, userName(u.ExternalID))
			for _, c := range u.Changes() {
				if c.Resource == "user" {
					continue // the header says it
				}
				switch c.Op {
				case OpCreate:
					fmt.Fprintf(w, "      + %s: %s\n", c.Field, planValue(c.New))
				case OpRemove:
					fmt.Fprintf(w, "      - %s: %s\n", c.Field, planValue(c.Old))
				default:
					fmt.Fprintf(w, "      ~ %s: %s → %s\n", c.Field, planValue(c.Old), planValue(c.New))
				}
			}
		}
	}
	return nil
}

// userName is the email of a user external id (the id itself otherwise).
func userName(ext string) string {
	if id, err := extid.Parse(ext); err == nil {
		return id.Name
	}
	return ext
}

// planValue renders a value as terraform does: numbers (a proficiency)
// bare, text quoted.
func planValue(v string) string {
	if v != "" && strings.Trim(v, "0123456789.") == "" && strings.Count(v, ".") <= 1 {
		return v
	}
	return strconv.Quote(v)
}
