package provisioner

import (
	"context"
	"fmt"
	"maps"
	"sort"

	"github.com/orgsync/orgsync/pkg/extid"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// applyQueues converges every pending user's queue memberships (delta.go):
// joins the desired queues it lacks and leaves the ones orgsync put it in
// that the source dropped (plus, under enforce, the ones added by hand when
// known), batched per queue across the plan (≤100 members per call, the
// client chunks). What the user holds comes, cheapest first, from: a user
// created by this attempt (nothing); outside a sweep, the baseline of a user
// orgsync configured before (it made these memberships; drift is the
// sweep's business); in a sweep, the user's own queue list (complete, so
// manual additions show); else one member listing per queue in question.
func (r *run) applyQueues(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	want := map[*userRun]map[string]bool{}
	base := map[*userRun]map[string]bool{}
	hasBase := map[*userRun]bool{}
	needList := map[string]bool{}
	var readUser []*userRun
	for _, u := range pending {
		w := map[string]bool{}
		for _, ref := range u.d.GetQueueRefs() {
			q := r.id(ref)
			if q == "" {
				out[u] = failed(failUser("queue %s is not resolved in %s", ref, r.org))
				break
			}
			w[q] = true
		}
		if _, done := out[u]; done {
			continue
		}
		b, hb, err := r.baseSet(ctx, u, u.baseline.GetQueueRefs())
		if err != nil {
			out[u] = failed(err)
			continue
		}
		want[u], base[u], hasBase[u] = w, b, hb
		switch {
		case u.act.queues != nil:
		case u.dx.verify:
			readUser = append(readUser, u)
		case hb && u.baselineHeld():
			u.act.queues = maps.Clone(b)
		default:
			for q := range w {
				needList[q] = true
			}
			for q := range b {
				needList[q] = true
			}
		}
	}
	read := r.forEach(ctx, readUser, func(ctx context.Context, u *userRun) stepResult {
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
			qs, err := r.c.ListUserQueues(ctx, u.id)
			if err != nil {
				return err
			}
			u.act.queues = map[string]bool{}
			for _, q := range qs {
				u.act.queues[q.ID] = true
				if r.nameOf(q.ID) == q.ID && q.Name != "" {
					// Name a queue the plan does not know (an extra in the
					// drift report) by its exact-name external id.
					r.setID(extid.Resource(r.plan.GetSourceOrg(), orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE, q.Name), q.ID)
				}
			}
			return nil
		})
		if err != nil {
			return failed(fmt.Errorf("list queues of user: %w", err))
		}
		return stepResult{}
	})
	for u, res := range read {
		if res.err != nil {
			out[u] = res
		}
	}
	members := map[string]map[string]bool{}
	for _, q := range sortedKeys(needList) {
		var users []string
		for u, w := range want {
			if u.act.queues == nil && (w[q] || base[u][q]) {
				users = append(users, u.ext)
			}
		}
		sort.Strings(users)
		err := r.m.call(ctx, users, func(ctx context.Context) (err error) {
			members[q], err = r.queueMembers(ctx, q)
			return err
		})
		if err != nil {
			for _, u := range pending {
				if _, done := out[u]; !done && u.act.queues == nil && (want[u][q] || base[u][q]) {
					out[u] = failed(err)
				}
			}
		}
	}
	add := map[string][]*userRun{}
	remove := map[string][]*userRun{}
	diffs := map[*userRun][]*orgsyncv1.FieldDiff{}
	for _, u := range pending {
		if _, done := out[u]; done {
			continue
		}
		if u.act.queues == nil {
			u.act.queues = map[string]bool{}
			for q := range needList {
				if want[u][q] || base[u][q] {
					u.act.queues[q] = members[q][u.id]
				}
			}
		}
		if u.dx.verify && hasBase[u] {
			u.addDrift(r.setDrift("queues", base[u], u.act.queues, "member")...)
		}
		in, outOf := convergeSet(r, want[u], base[u], u.act.queues, hasBase[u])
		for q := range want[u] {
			if !u.act.queues[q] && !contains(in, q) {
				u.markKept("queues", q)
			}
		}
		for _, q := range in {
			add[q] = append(add[q], u)
			diffs[u] = append(diffs[u], &orgsyncv1.FieldDiff{Field: "queues[" + r.nameOf(q) + "]", Want: "member"})
		}
		for _, q := range outOf {
			remove[q] = append(remove[q], u)
			diffs[u] = append(diffs[u], &orgsyncv1.FieldDiff{Field: "queues[" + r.nameOf(q) + "]", Got: "member"})
		}
	}
	if !r.dry {
		write := func(byQueue map[string][]*userRun, joining bool) {
			for _, q := range sortedKeys(byQueue) {
				us := byQueue[q]
				sort.Slice(us, func(i, j int) bool { return us[i].ext < us[j].ext })
				ids := make([]string, len(us))
				for i, u := range us {
					ids[i] = u.id
				}
				err := r.m.call(ctx, extsOf(us), func(ctx context.Context) error {
					if joining {
						return r.c.AddQueueMembers(ctx, q, ids)
					}
					return r.c.RemoveQueueMembers(ctx, q, ids)
				})
				for _, u := range us {
					switch {
					case err != nil && joining:
						out[u] = failed(fmt.Errorf("add to queue %s: %w", r.nameOf(q), err))
					case err != nil:
						out[u] = failed(fmt.Errorf("remove from queue %s: %w", r.nameOf(q), err))
					case joining:
						u.act.queues[q] = true
					default:
						delete(u.act.queues, q)
					}
				}
			}
		}
		write(add, true)
		write(remove, false)
	}
	for _, u := range pending {
		if _, done := out[u]; !done {
			sortFieldDiffs(diffs[u])
			out[u] = changedIf(len(diffs[u]) > 0, diffs[u], fmt.Sprintf("%d queue membership change(s)", len(diffs[u])))
		}
	}
	return out
}

// applyTeams converges every pending user's team (delta.go): a user moves
// to the desired team (removed from the old one first, then added; batched
// per team, ≤25 ids per call), leaves a team orgsync put it in that the
// source dropped, and is left alone when neither the source nor orgsync
// ever gave it a team. Membership comes from the user read (expand=team);
// when that was not available, the member lists of the teams in question
// are read once per plan.
func (r *run) applyTeams(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	listed := map[string]map[string]bool{}
	isMember := func(u *userRun, t string) (bool, error) {
		if isPlaceholder(t) {
			return false, nil // dry run: a team to be created has no members
		}
		if _, ok := listed[t]; !ok {
			err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
				ms, err := r.c.ListTeamMembers(ctx, t)
				if err != nil {
					return err
				}
				listed[t] = map[string]bool{}
				for _, m := range ms {
					listed[t][m.ID] = true
				}
				return nil
			})
			if err != nil {
				return false, fmt.Errorf("list members of team %s: %w", r.nameOf(t), err)
			}
		}
		return listed[t][u.id], nil
	}
	type move struct{ from, to string }
	moves := map[*userRun]move{}
	for _, u := range pending {
		w := ""
		if ref := u.d.GetTeamRef(); ref != "" {
			if w = r.id(ref); w == "" {
				out[u] = failed(failUser("team %s is not resolved in %s", ref, r.org))
				continue
			}
		}
		hasBase := u.baseline != nil
		b, err := r.refID(ctx, u.baseline.GetTeamRef())
		if err != nil {
			out[u] = failed(err)
			continue
		}
		a := u.act.teamID
		if !u.act.teamKnown {
			a = ""
			for _, t := range []string{w, b} {
				if t == "" {
					continue
				}
				in, err := isMember(u, t)
				if err != nil {
					out[u] = failed(err)
					break
				}
				if in {
					a = t
					break
				}
			}
			if _, done := out[u]; done {
				continue
			}
			u.act.teamID, u.act.teamKnown = a, true
		}
		if u.dx.verify && hasBase && a != b {
			u.addDrift(&orgsyncv1.FieldDiff{Field: "team", Want: r.nameOf(b), Got: r.nameOf(a)})
		}
		target := w
		switch {
		case hasBase && b == w && r.report():
			target = a // source unchanged: a drifted team is only reported
		case !hasBase && w == "":
			target = a // never managed by orgsync: left alone
		}
		if target == a {
			msg := "no team wanted"
			if a != "" {
				msg = "already in team " + r.nameOf(a)
			}
			out[u] = changedIf(false, nil, msg)
			continue
		}
		moves[u] = move{from: a, to: target}
	}
	diff := func(u *userRun) []*orgsyncv1.FieldDiff {
		m := moves[u]
		return []*orgsyncv1.FieldDiff{{Field: "team", Want: r.nameOf(m.to), Got: r.nameOf(m.from)}}
	}
	if r.dry {
		for u := range moves {
			out[u] = changedIf(true, diff(u), "would move to team "+r.nameOf(moves[u].to))
		}
		return out
	}
	leave, join := map[string][]*userRun{}, map[string][]*userRun{}
	for u, m := range moves {
		if m.from != "" {
			leave[m.from] = append(leave[m.from], u)
		}
		if m.to != "" {
			join[m.to] = append(join[m.to], u)
		}
	}
	// Leave first: a user belongs to one team at a time.
	for _, t := range sortedKeys(leave) {
		us := leave[t]
		sort.Slice(us, func(i, j int) bool { return us[i].ext < us[j].ext })
		ids := make([]string, len(us))
		for i, u := range us {
			ids[i] = u.id
		}
		err := r.m.call(ctx, extsOf(us), func(ctx context.Context) error { return r.c.RemoveTeamMembers(ctx, t, ids) })
		for _, u := range us {
			if err != nil {
				out[u] = failed(fmt.Errorf("remove from team %s: %w", r.nameOf(t), err))
				continue
			}
			u.act.teamID = ""
		}
	}
	for _, t := range sortedKeys(join) {
		var us []*userRun
		for _, u := range join[t] {
			if _, done := out[u]; !done {
				us = append(us, u)
			}
		}
		if len(us) == 0 {
			continue
		}
		sort.Slice(us, func(i, j int) bool { return us[i].ext < us[j].ext })
		ids := make([]string, len(us))
		for i, u := range us {
			ids[i] = u.id
		}
		var failures map[string]string
		err := r.m.call(ctx, extsOf(us), func(ctx context.Context) error {
			res, err := r.c.AddTeamMembers(ctx, t, ids)
			failures = map[string]string{}
			for _, f := range res.Failures {
				failures[f.ID] = f.Reason
			}
			return err
		})
		for _, u := range us {
			switch {
			case err != nil:
				out[u] = failed(fmt.Errorf("add to team %s: %w", r.nameOf(t), err))
			case failures[u.id] != "":
				out[u] = failed(failUser("add to team %s: %s", r.nameOf(t), failures[u.id]))
			default:
				u.act.teamID, u.act.teamKnown = t, true
			}
		}
	}
	for u, m := range moves {
		if _, done := out[u]; done {
			continue
		}
		msg := "joined team " + r.nameOf(m.to)
		if m.to == "" {
			msg = "left team " + r.nameOf(m.from)
		}
		out[u] = changedIf(true, diff(u), msg)
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func sortFieldDiffs(d []*orgsyncv1.FieldDiff) { sortDiffs(d) }
