package provisioner

import (
	"context"
	"sync"

	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// meter attributes API calls: every call of a plan runs through meter.call
// with the users it serves; a call serving several users (a batch) is
// amortised evenly over them, a call serving none (shared resources) is
// amortised over all users of the plan when the plan ends.
type meter struct {
	mu     sync.Mutex
	total  usage
	shared usage
	users  map[string]*usage // by user external id
}

// usage is a fractional ApiUsage (batched calls split across users).
type usage struct{ reads, writes, throttled float64 }

func (u *usage) add(o usage, share float64) {
	u.reads += o.reads * share
	u.writes += o.writes * share
	u.throttled += o.throttled * share
}

func (u usage) proto() *orgsyncv1.ApiUsage {
	r := func(f float64) int32 { return int32(f + 0.5) }
	return &orgsyncv1.ApiUsage{Reads: r(u.reads), Writes: r(u.writes), Throttled: r(u.throttled)}
}

func (u usage) calls() float64 { return u.reads + u.writes }

func newMeter() *meter { return &meter{users: map[string]*usage{}} }

// call runs fn with a counting context and books its calls to users (none:
// shared by the whole plan).
func (m *meter) call(ctx context.Context, users []string, fn func(ctx context.Context) error) error {
	cctx, n := orgs.WithCounter(ctx)
	err := fn(cctx)
	reads, writes, throttled := n.Counts()
	got := usage{reads: float64(reads), writes: float64(writes), throttled: float64(throttled)}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total.add(got, 1)
	if len(users) == 0 {
		m.shared.add(got, 1)
		return err
	}
	share := 1 / float64(len(users))
	for _, id := range users {
		uu := m.users[id]
		if uu == nil {
			uu = &usage{}
			m.users[id] = uu
		}
		uu.add(got, share)
	}
	return err
}

// user returns the calls attributable to one user: its own, its share of
// batches, and its share of the plan's shared calls over nUsers.
func (m *meter) user(id string, nUsers int) usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out usage
	if uu := m.users[id]; uu != nil {
		out = *uu
	}
	if nUsers > 0 {
		out.add(m.shared, 1/float64(nUsers))
	}
	return out
}

// plan returns every call of the plan.
func (m *meter) plan() usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total
}
