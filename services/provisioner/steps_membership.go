package provisioner

import (
	"context"
	"fmt"
	"sort"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// applyQueues adds every pending user to the queues it lacks, batched per
// queue across the plan (≤100 members per call, the client chunks). Users
// created by this attempt are known non-members; users whose baseline holds
// the same queues are trusted; for the others each needed queue's member
// list is read once per plan.
func (r *run) applyQueues(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	want := map[*userRun][]string{}
	needList := map[string]bool{}
	for _, u := range pending {
		if u.act.queues == nil && u.trusted(func(a, b *orgsyncv1.UserConfig) bool { return sameRefs(a.GetQueueRefs(), b.GetQueueRefs()) }) {
			// orgsync made these memberships and the baseline still wants
			// them: drift is the reconciler's sweep's business, not a
			// re-read of every queue's member list on every run.
			u.act.queues = map[string]bool{}
			for _, ref := range u.d.GetQueueRefs() {
				u.act.queues[r.id(ref)] = true
			}
		}
		for _, ref := range u.d.GetQueueRefs() {
			q := r.id(ref)
			if q == "" {
				out[u] = failed(failUser("queue %s is not resolved in %s", ref, r.org))
				break
			}
			want[u] = append(want[u], q)
			if u.act.queues == nil {
				needList[q] = true
			}
		}
	}
	members := map[string]map[string]bool{}
	for _, q := range sortedKeys(needList) {
		var users []string
		for u, qs := range want {
			if u.act.queues == nil && contains(qs, q) {
				users = append(users, u.ext)
			}
		}
		err := r.m.call(ctx, users, func(ctx context.Context) error {
			ms, err := r.c.ListQueueMembers(ctx, q)
			members[q] = map[string]bool{}
			for _, m := range ms {
				id := m.ID
				if m.User != nil && m.User.ID != "" {
					id = m.User.ID
				}
				members[q][id] = true
			}
			return err
		})
		if err != nil {
			for _, u := range pending {
				if contains(want[u], q) && u.act.queues == nil {
					out[u] = failed(fmt.Errorf("list members of queue %s: %w", r.nameOf(q), err))
				}
			}
		}
	}
	isMember := func(u *userRun, q string) bool {
		if u.act.queues != nil {
			return u.act.queues[q]
		}
		return members[q][u.id]
	}
	add := map[string][]*userRun{}
	diffs := map[*userRun][]*orgsyncv1.FieldDiff{}
	for _, u := range pending {
		if _, done := out[u]; done {
			continue
		}
		for _, q := range want[u] {
			if !isMember(u, q) {
				add[q] = append(add[q], u)
				diffs[u] = append(diffs[u], &orgsyncv1.FieldDiff{Field: "queues[" + r.nameOf(q) + "]", Want: "member"})
			}
		}
	}
	if !r.dry {
		for _, q := range sortedKeys(add) {
			us := add[q]
			ids := make([]string, len(us))
			for i, u := range us {
				ids[i] = u.id
			}
			err := r.m.call(ctx, extsOf(us), func(ctx context.Context) error { return r.c.AddQueueMembers(ctx, q, ids) })
			for _, u := range us {
				if err != nil {
					out[u] = failed(fmt.Errorf("add to queue %s: %w", r.nameOf(q), err))
					continue
				}
				if u.act.queues == nil {
					u.act.queues = map[string]bool{}
				}
				u.act.queues[q] = true
			}
		}
	}
	for _, u := range pending {
		if _, done := out[u]; !done {
			sortFieldDiffs(diffs[u])
			out[u] = changedIf(len(diffs[u]) > 0, diffs[u], fmt.Sprintf("%d queue(s) joined", len(diffs[u])))
		}
	}
	return out
}

// applyTeams puts every pending user in its desired team, batched per team
// (the client sends ≤25 member ids per call). A user without a desired team
// is left alone. Team membership comes from the user read (expand=team);
// when that was not available, the team's member list is read once.
func (r *run) applyTeams(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	add := map[string][]*userRun{}
	listed := map[string]map[string]bool{}
	for _, u := range pending {
		if u.d.GetTeamRef() == "" {
			out[u] = changedIf(false, nil, "no team wanted")
			continue
		}
		t := r.id(u.d.GetTeamRef())
		if t == "" {
			out[u] = failed(failUser("team %s is not resolved in %s", u.d.GetTeamRef(), r.org))
			continue
		}
		in := u.act.teamKnown && u.act.teamID == t
		if !u.act.teamKnown {
			if _, ok := listed[t]; !ok {
				err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
					ms, err := r.c.ListTeamMembers(ctx, t)
					listed[t] = map[string]bool{}
					for _, m := range ms {
						listed[t][m.ID] = true
					}
					return err
				})
				if err != nil {
					delete(listed, t)
					out[u] = failed(fmt.Errorf("list members of team %s: %w", r.nameOf(t), err))
					continue
				}
			}
			in = listed[t][u.id]
		}
		if in {
			out[u] = changedIf(false, nil, "already in team "+r.nameOf(t))
			continue
		}
		add[t] = append(add[t], u)
	}
	for _, t := range sortedKeys(add) {
		us := add[t]
		sort.Slice(us, func(i, j int) bool { return us[i].ext < us[j].ext })
		diff := func(u *userRun) []*orgsyncv1.FieldDiff {
			return []*orgsyncv1.FieldDiff{{Field: "team", Want: r.nameOf(t), Got: r.nameOf(u.act.teamID)}}
		}
		if r.dry {
			for _, u := range us {
				out[u] = changedIf(true, diff(u), "would join team "+r.nameOf(t))
			}
			continue
		}
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
				out[u] = changedIf(true, diff(u), "joined team "+r.nameOf(t))
				u.act.teamID, u.act.teamKnown = t, true
			}
		}
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
