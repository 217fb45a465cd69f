package metrics

import (
	"context"
	"sort"
	"sync"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgs"
)

// WatchLimiters exports the rate budgets of reg's clients: the time callers
// waited for the budget (orgsync_genesys_ratelimit_wait_seconds_total) and
// the current adaptive rate (orgsync_genesys_ratelimit_rate), for every org
// this process has called (GenesysCall marks them). reg is held weakly: a
// registry that is dropped (tests build many) stops being observed. With
// several registries in one process (`orgsync dev`) waits are summed and the
// lowest rate is reported.
func WatchLimiters(reg *orgs.Registry) {
	s := get()
	if s == nil || reg == nil {
		return
	}
	s.limiters.mu.Lock()
	defer s.limiters.mu.Unlock()
	s.limiters.sources = append(s.limiters.sources, weak.Make(reg))
}

// limiterWatch is the callback state behind WatchLimiters.
type limiterWatch struct {
	mu      sync.Mutex
	sources []weak.Pointer[orgs.Registry]
	orgs    map[string]bool
}

func (w *limiterWatch) sawOrg(org string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.orgs == nil {
		w.orgs = map[string]bool{}
	}
	w.orgs[org] = true
}

func (w *limiterWatch) register(m metric.Meter) error {
	wait, err := m.Float64ObservableCounter("orgsync.genesys.ratelimit.wait", metric.WithUnit("s"),
		metric.WithDescription("Time API callers waited for the org's rate budget (token bucket or 429 pause), per org."))
	if err != nil {
		return err
	}
	rate, err := m.Float64ObservableGauge("orgsync.genesys.ratelimit.rate",
		metric.WithDescription("Current adaptive request budget of the org in requests/second (halved on 429, recovers on success)."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for org, st := range w.snapshot() {
			attrs := metric.WithAttributes(attribute.String("org", org))
			o.ObserveFloat64(wait, st.TotalWait.Seconds(), attrs)
			o.ObserveFloat64(rate, st.Rate, attrs)
		}
		return nil
	}, wait, rate)
	return err
}

// snapshot sums the limiter stats of every live source per seen org.
func (w *limiterWatch) snapshot() map[string]genesys.LimiterStats {
	w.mu.Lock()
	seenOrgs := make([]string, 0, len(w.orgs))
	for o := range w.orgs {
		seenOrgs = append(seenOrgs, o)
	}
	live := w.sources[:0]
	var srcs []*orgs.Registry
	for _, p := range w.sources {
		if reg := p.Value(); reg != nil {
			live = append(live, p)
			srcs = append(srcs, reg)
		}
	}
	w.sources = live
	w.mu.Unlock()
	sort.Strings(seenOrgs)

	out := map[string]genesys.LimiterStats{}
	for _, org := range seenOrgs {
		seen := map[*genesys.Limiter]bool{} // registries may share a limiter
		for _, reg := range srcs {
			if !reg.Has(org) {
				continue
			}
			c, err := reg.Client(org)
			if err != nil || c.Limiter() == nil || seen[c.Limiter()] {
				continue
			}
			seen[c.Limiter()] = true
			st := c.Limiter().Stats()
			agg, ok := out[org]
			if !ok {
				agg = st
			} else {
				agg.TotalWait += st.TotalWait
				agg.Rate = min(agg.Rate, st.Rate)
			}
			out[org] = agg
		}
	}
	return out
}
