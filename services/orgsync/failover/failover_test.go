package failover_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/replay"
)

// Failover settings of the provisioner processes: the standby takes an org
// over PinnedTTL after the active instance died, and the interrupted plan is
// redelivered AckWait after its last progress report (every AckWait/3).
const (
	testAckWait   = "3s"
	testPinnedTTL = "2s"
)

// killFigure is what one kill point cost.
type killFigure struct {
	Round      int           `json:"round"`
	Org        string        `json:"org"`
	AfterWrite int           `json:"afterWrites"`
	Victim     string        `json:"victim"`
	ActiveOn   []string      `json:"activeOn"`
	Failover   time.Duration `json:"failover"`
	ExtraCalls int           `json:"extraCalls"`
}

// TestProvisionerFailover is "Done when" 1, 5 and 3 of issue 6 on one
// system: three provisioner processes serve six target orgs, each org owned
// by two of them (active/standby through the pinned consumer). In each kill
// round a request clones new users into all six orgs, and the active owner
// of a randomly chosen org is killed with SIGKILL after a random number of
// its writes: every request must complete with every user exactly once and
// configured like the source. Then the processes' health and metrics
// endpoints must tell what happened, and finally every provisioner loses its
// bbolt state and the whole PLANS stream is replayed: the target state must
// not change and nothing may be duplicated.
//
// Default: 3 kill rounds; ORGSYNC_FAILOVER_FULL=1: 10. The seed is
// ORGSYNC_FAILOVER_SEED (default 6).
func TestProvisionerFailover(t *testing.T) {
	requireBinaries(t)
	t.Parallel()
	killRounds := 3
	if fullSize() {
		killRounds = 10
	}
	seed := uint64(6)
	if v := os.Getenv("ORGSYNC_FAILOVER_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ORGSYNC_FAILOVER_SEED=%q: %v", v, err)
		}
		seed = n
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	const (
		targets  = 6
		perRound = 4
	)
	rounds := 2 + killRounds // warm-up, reference, kill rounds
	sys := newSystem(t, buildFixture(t, perRound*rounds, targets), simConfig(20*time.Millisecond), natsServer(t), 1)
	pipeline := sys.startPipeline()

	// Ownership: org i is owned by provisioners (i-1)%3 and i%3.
	var keys []string
	owners := map[string][2]int{}
	own := make([][]string, 3)
	for i := 1; i <= targets; i++ {
		k := targetKey(i)
		keys = append(keys, k)
		a, b := (i-1)%3, i%3
		owners[k] = [2]int{a, b}
		own[a], own[b] = append(own[a], k), append(own[b], k)
	}
	provs := make([]*proc, 3)
	statePaths := make([]string, 3)
	for p := range provs {
		name := fmt.Sprintf("provisioner-%d", p)
		statePaths[p] = filepath.Join(sys.dir, name+".db")
		provs[p] = sys.startService("provisioner", name, "--own", strings.Join(own[p], ","), "--state", statePaths[p],
			"--instance", name, "--ack-wait", testAckWait, "--pinned-ttl", testPinnedTTL)
	}

	usersOf := func(r int) []string {
		var out []string
		for i := r * perRound; i < (r+1)*perRound; i++ {
			out = append(out, agentEmail(i))
		}
		return out
	}
	var cloned []string
	callsNow := func() map[string]int {
		out := map[string]int{}
		for _, k := range keys {
			out[k] = sys.calls(k)
		}
		return out
	}
	run := func(r int) map[string]int {
		before := callsNow()
		sys.wait(sys.submit(fmt.Sprintf("%s-round-%d", t.Name(), r), usersOf(r), keys), 2*time.Minute)
		cloned = append(cloned, usersOf(r)...)
		sys.assertCloned(keys, cloned)
		delta := map[string]int{}
		for k, n := range callsNow() {
			delta[k] = n - before[k]
		}
		return delta
	}

	run(0) // warm-up: creates the skills, languages and team in every target
	reference := run(1)
	// Kill points are drawn among the first half of an org's writes in a
	// round (writes are about two thirds of its calls), so the kill lands
	// mid-plan.
	refWrites := map[string]int{}
	for _, k := range keys {
		if reference[k] == 0 {
			t.Fatalf("reference round made no API calls in %s", k)
		}
	}
	t.Logf("reference round (%d users × %d orgs, no failure): API calls per org %v", perRound, targets, reference)

	apiCalls := func(p *proc, org string) float64 {
		return p.metrics().sum("orgsync_genesys_api_calls_total", "org="+org)
	}
	var figures []killFigure
	for r := 2; r < rounds; r++ {
		org := keys[rng.IntN(len(keys))]
		beforeWrites := sys.writes(org)
		if refWrites[org] == 0 {
			refWrites[org] = max(2, (reference[org]*2)/3) // writes are about two thirds of the calls
		}
		killAt := 1 + rng.IntN(refWrites[org]/2)
		beforeCalls := callsNow()
		startCalls := map[int]map[string]float64{}
		for p, pr := range provs {
			m := pr.metrics()
			startCalls[p] = map[string]float64{}
			for _, k := range own[p] {
				startCalls[p][k] = m.sum("orgsync_genesys_api_calls_total", "org="+k)
			}
		}
		sub := sys.submit(fmt.Sprintf("%s-round-%d", t.Name(), r), usersOf(r), keys)
		waitFor(t, time.Minute, fmt.Sprintf("%d writes in %s", killAt, org), func() bool { return sys.writes(org)-beforeWrites >= killAt })

		// The active owner is the one whose Genesys calls to org went up.
		victim, standby := -1, -1
		for _, p := range owners[org] {
			if apiCalls(provs[p], org) > startCalls[p][org] {
				victim = p
			}
		}
		for _, p := range owners[org] {
			if p != victim {
				standby = p
			}
		}
		if victim < 0 {
			t.Fatalf("round %d: %d writes in %s but neither owner %v made calls to it", r, killAt, org, owners[org])
		}
		fig := killFigure{Round: r, Org: org, AfterWrite: killAt, Victim: provs[victim].name}
		victimMetrics := provs[victim].metrics()
		for _, k := range own[victim] {
			if victimMetrics.sum("orgsync_genesys_api_calls_total", "org="+k) > startCalls[victim][k] {
				fig.ActiveOn = append(fig.ActiveOn, k)
			}
		}
		standbyCalls := apiCalls(provs[standby], org)
		standbyRedelivered := provs[standby].metrics().sum("orgsync_messages_redelivered_total", "subject=orgsync.plan."+org)
		provs[victim].kill()
		killed := time.Now()
		waitFor(t, time.Minute, fmt.Sprintf("standby %s to take over %s", provs[standby].name, org), func() bool {
			return apiCalls(provs[standby], org) > standbyCalls
		})
		fig.Failover = time.Since(killed).Round(10 * time.Millisecond)

		sys.wait(sub, 2*time.Minute)
		cloned = append(cloned, usersOf(r)...)
		sys.assertCloned(keys, cloned)
		for k, n := range callsNow() {
			fig.ExtraCalls += n - beforeCalls[k] - reference[k]
		}
		// The takeover is visible in the standby's metrics: the plan it
		// finished was a redelivery. A delivery is counted once the handler
		// has returned and the message is acked, which is after the plan's
		// last event told the request it was done; so poll.
		waitForState(t, 30*time.Second, fmt.Sprintf("round %d: standby %s to count the redelivered plan of %s and its duration", r, provs[standby].name, org), func() (bool, string) {
			m := provs[standby].metrics()
			redelivered := m.sum("orgsync_messages_redelivered_total", "subject=orgsync.plan."+org)
			durations := m.sum("orgsync_plan_duration_seconds_count", "org="+org)
			return redelivered > standbyRedelivered && durations > 0,
				fmt.Sprintf("orgsync_messages_redelivered_total %v (before the kill %v), orgsync_plan_duration_seconds_count %v", redelivered, standbyRedelivered, durations)
		})
		figures = append(figures, fig)
		t.Logf("kill round %d: %s killed after %d writes in %s (active on %v); standby %s took over in %v; %d extra API calls",
			r, fig.Victim, killAt, org, fig.ActiveOn, provs[standby].name, fig.Failover, fig.ExtraCalls)

		provs[victim].start() // back as standby, same bbolt file
		provs[victim].waitReady(time.Minute)
	}
	logFigures(t, seed, figures)

	t.Run("every plan handled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, k := range keys {
			if ok, err := sys.consumerDrained(ctx, "provisioner-"+k); err != nil || !ok {
				t.Errorf("consumer provisioner-%s still has plans pending or unacknowledged (%v)", k, err)
			}
		}
	})

	t.Run("health and metrics tell what happened", func(t *testing.T) {
		all := []*proc{pipeline["auth"], pipeline["extractor"], pipeline["resolver"], provs[0], provs[1], provs[2]}
		for _, p := range all {
			for _, path := range []string{"/healthz", "/readyz"} {
				if code, body, err := httpGet(p.httpAddr, path); err != nil || code != 200 {
					t.Errorf("%s %s = %d %q %v", p.name, path, code, body, err)
				}
			}
		}
		if n := pipeline["auth"].metrics().sum("orgsync_auth_tokens_refreshed_total", "outcome=ok"); n < 1 {
			t.Errorf("auth: orgsync_auth_tokens_refreshed_total{outcome=ok} = %v", n)
		}
		if n := pipeline["extractor"].metrics().sum("orgsync_messages_processed_total", "stream=CLONE"); n != float64(rounds) {
			t.Errorf("extractor: %v clone requests processed, want %d", n, rounds)
		}
		if n := pipeline["resolver"].metrics().sum("orgsync_messages_processed_total", "stream=SNAPSHOTS"); n != float64(rounds) {
			t.Errorf("resolver: %v snapshots processed, want %d", n, rounds)
		}
		// Provisioner counters restart with a killed process; the survivors
		// together still account for plans and API calls in every org.
		for _, k := range keys {
			var plans, calls float64
			for _, p := range owners[k] {
				m := provs[p].metrics()
				plans += m.sum("orgsync_messages_processed_total", "subject=orgsync.plan."+k)
				calls += m.sum("orgsync_genesys_api_calls_total", "org="+k, "status_class=2xx")
			}
			if plans < 1 || calls < 1 {
				t.Errorf("%s: owners report %v plans processed and %v successful API calls", k, plans, calls)
			}
		}
	})

	t.Run("wiped state and replayed PLANS converge with no duplicates", func(t *testing.T) {
		before := map[string]string{}
		for _, k := range keys {
			before[k] = orgStateJSON(t, sys, k)
		}
		callsBefore := callsNow()
		for p, pr := range provs {
			pr.stop()
			if err := os.Remove(statePaths[p]); err != nil {
				t.Fatal(err)
			}
		}
		for _, pr := range provs {
			pr.start()
			pr.waitReady(time.Minute)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		res, err := replay.Run(ctx, sys.js, replay.Options{Stream: natsx.StreamPlans, FromSeq: 1})
		if err != nil {
			t.Fatal(err)
		}
		if want := targets * rounds; res.Published != want {
			t.Errorf("replay published %d plans, want %d (%+v)", res.Published, want, res)
		}
		started := time.Now()
		waitFor(t, 3*time.Minute, "every replayed plan handled", func() bool {
			for _, k := range keys {
				if ok, err := sys.consumerDrained(ctx, "provisioner-"+k); err != nil || !ok {
					return false
				}
			}
			return true
		})
		took := time.Since(started)
		sys.assertCloned(keys, cloned)
		extra := 0
		for _, k := range keys {
			if after := orgStateJSON(t, sys, k); after != before[k] {
				t.Errorf("%s: target state changed by the replay:\nbefore %s\nafter  %s", k, before[k], after)
			}
			extra += sys.calls(k) - callsBefore[k]
		}
		t.Logf("replay of %d plans (%d users × %d orgs) after wiping every provisioner's bbolt: %d API calls (%.1f per user), %v",
			res.Published, len(cloned), targets, extra, float64(extra)/float64(len(cloned)*targets), took.Round(10*time.Millisecond))
	})
}

// orgStateJSON is gcsim's dump of org key, the truth the tests compare.
func orgStateJSON(t *testing.T, sys *system, key string) string {
	t.Helper()
	st, ok := sys.sim.OrgState(sys.orgIDs[key])
	if !ok {
		t.Fatalf("no org %s", key)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logFigures logs the kill points as a table (and JSON for the README).
func logFigures(t *testing.T, seed uint64, figs []killFigure) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "failover figures (seed %d, %d kill points):\n", seed, len(figs))
	var total time.Duration
	var maxFail time.Duration
	extra := 0
	for _, f := range figs {
		fmt.Fprintf(&b, "  round %2d  %-8s after %3d writes  victim %s (active on %v)  failover %v  extra calls %d\n",
			f.Round, f.Org, f.AfterWrite, f.Victim, f.ActiveOn, f.Failover, f.ExtraCalls)
		total += f.Failover
		maxFail = max(maxFail, f.Failover)
		extra += f.ExtraCalls
	}
	if len(figs) > 0 {
		fmt.Fprintf(&b, "  mean failover %v, max %v; mean extra API calls per kill %.1f",
			(total / time.Duration(len(figs))).Round(10*time.Millisecond), maxFail, float64(extra)/float64(len(figs)))
	}
	t.Log(b.String())
}
