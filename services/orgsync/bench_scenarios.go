package orgsync

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/services/gcsim"
)

// benchS1 clones one reference user (the supervisor) into S1Targets orgs
// and reports the end-to-end latency.
func benchS1(ctx context.Context, cfg BenchConfig) (ScenarioResult, error) {
	n := cfg.Sizes.S1Targets
	res := ScenarioResult{Name: ScenarioS1, Title: "1 user → orgs (latency)", Available: true, Users: 1, Targets: n}
	fx, err := BenchFixture(1, n)
	if err != nil {
		return res, err
	}
	env, err := startBenchEnv(ctx, cfg, "s1", fx, *cfg.Sim, cfg.PipelineRate, int(cfg.PipelineRate), nil)
	if err != nil {
		return res, err
	}
	defer env.close()
	targets := benchTargets(n)
	progressf(cfg, "S1: clone 1 user into %d orgs", n)
	before := env.statsOf(targets)
	rep, wall, err := env.clone(ctx, cfg, CloneSpec{SourceOrg: BenchSourceOrg, Users: benchUsers(1), Targets: targets, RequestedBy: "orgsync-bench"})
	if err != nil {
		return res, err
	}
	res.fromReport(rep)
	res.targetMetrics(before, env.statsOf(targets), targets, wall, 0)
	res.RateEfficiency, res.RateEfficiencyMin = 0, 0 // one user cannot use a budget
	res.SourceCalls = benchCalls(env.stats.Stats(env.dev.OrgIDs[BenchSourceOrg]))
	return res, nil
}

// benchS2S3 clones S2Users users into S2Targets orgs (S2), then the same
// users again as a new request (S3), in one environment with realistic
// gcsim settings.
func benchS2S3(ctx context.Context, cfg BenchConfig) ([]ScenarioResult, error) {
	z := cfg.Sizes
	fx, err := BenchFixture(z.S2Users, z.S2Targets)
	if err != nil {
		return nil, err
	}
	env, err := startBenchEnv(ctx, cfg, "s2", fx, *cfg.Sim, cfg.PipelineRate, int(cfg.PipelineRate), nil)
	if err != nil {
		return nil, err
	}
	defer env.close()
	targets := benchTargets(z.S2Targets)
	spec := CloneSpec{SourceOrg: BenchSourceOrg, Users: benchUsers(z.S2Users), Targets: targets, RequestedBy: "orgsync-bench"}
	budget := OrgBudget(cfg.PipelineRate, cfg.Sim.RateLimitPerMinute)
	var out []ScenarioResult
	for _, name := range []string{ScenarioS2, ScenarioS3} {
		title := "bulk clone"
		if name == ScenarioS3 {
			title = "same request again"
		}
		res := ScenarioResult{Name: name, Title: title, Available: true, Users: z.S2Users, Targets: z.S2Targets}
		progressf(cfg, "%s: clone %d users into %d orgs (%s)", name, z.S2Users, z.S2Targets, title)
		srcBefore := env.stats.Stats(env.dev.OrgIDs[BenchSourceOrg])
		before := env.statsOf(targets)
		rep, wall, err := env.clone(ctx, cfg, spec)
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		res.fromReport(rep)
		res.targetMetrics(before, env.statsOf(targets), targets, wall, budget)
		res.SourceCalls = benchCalls(diffStats(srcBefore, env.stats.Stats(env.dev.OrgIDs[BenchSourceOrg])))
		if name == ScenarioS3 {
			// Nothing to do: the run is bound by latency, not the budget.
			res.RateEfficiency, res.RateEfficiencyMin = 0, 0
		}
		if name == ScenarioS2 && !cfg.runs(ScenarioS2) {
			continue
		}
		out = append(out, res)
		if !cfg.runs(ScenarioS3) {
			break
		}
	}
	return out, nil
}

// s4SimArgs are the `orgsync gcsim` flags of S4: no rate limit (latency
// and consistency windows are off by default), so the figures measure
// orgsync's own overhead.
func s4SimArgs() []string { return []string{"--rate-limit", "-1"} }

// S4ProvisionerArgs are the provisioner flags of S4 and S6: with no rate
// limit the per-org concurrency is what bounds a clone (defaults 4 plans ×
// 4 users; measured at 1,000 × 10: 1,044 → 1,616 calls/s with 12 × 8).
// With snapshot parts growing to 100 users, 5 plans hold as many users in
// flight as 12 plans of 20 did; 12 of 100 held 12,000 users at 2,000 × 10
// and the heap outgrew the memory limit (GC a third of the CPU, 155 s
// instead of 46 s).
func S4ProvisionerArgs() []string {
	return []string{"--max-concurrent-plans", "5", "--user-concurrency", "8"}
}

// startLimitsOff starts gcsim with fx in its own process, limits off
// (s4SimArgs), and a dev environment using it with S4's provisioner
// concurrency: the setting of S4 and S6.
// provArgs are more provisioner flags of the scenario (after S4's).
func startLimitsOff(ctx context.Context, cfg BenchConfig, name string, fx *gcsim.Fixture, provArgs []string, opts ...orgs.Option) (*simProcess, *benchEnv, error) {
	progressf(cfg, "%s: start gcsim (%d orgs) in its own process", name, len(fx.Orgs))
	sim, err := startSimProcess(ctx, cfg.SimCommand, cfg.StoreDir, fx, s4SimArgs()...)
	if err != nil {
		return nil, nil, err
	}
	// The pipeline's own limiter must not be the bound either, nor the
	// provisioner's default concurrency (sized for 300 requests/minute).
	lcfg := cfg
	lcfg.ServiceArgs = maps.Clone(cfg.ServiceArgs)
	if lcfg.ServiceArgs == nil {
		lcfg.ServiceArgs = map[string][]string{}
	}
	lcfg.ServiceArgs["provisioner"] = slices.Concat(S4ProvisionerArgs(), provArgs, cfg.ServiceArgs["provisioner"])
	// gcsim.Config{}: the environment uses sim, set up by s4SimArgs.
	env, err := startBenchEnv(ctx, lcfg, strings.ToLower(name), fx, gcsim.Config{}, 1e6, 1000, sim, opts...)
	if err != nil {
		sim.Close()
		return nil, nil, err
	}
	return sim, env, nil
}

// s6ProvisionerArgs bound the plans in flight in all of S6's orgs to S4's
// 50 (5 plans of one org at once, 10 orgs): the provisioner's concurrency
// is per org, and 5 plans × 20 orgs held 10,000 users' plans and run state
// in memory (87 of 207 MB live at 5,000 × 20) for no more throughput on
// two cores.
func s6ProvisionerArgs(orgs int) []string {
	return []string{"--max-concurrent-plans", strconv.Itoa(min(5, max(1, 50/orgs)))}
}

// benchS6 is the scale scenario: S6Users users into S6Targets orgs with
// limits off, as S4 but without the replay, run at half the users and
// then at the full count, each in a fresh environment. It reports the
// larger run's wall time and peak RSS (VmHWM reset before it), and the
// exponent of wall time in users × orgs between the two runs (1: linear).
func benchS6(ctx context.Context, cfg BenchConfig) (ScenarioResult, error) {
	z := cfg.Sizes
	res := ScenarioResult{Name: ScenarioS6, Title: "scale (limits off)", Available: true, Users: z.S6Users, Targets: z.S6Targets}
	half := max(z.S6Users/2, 1)
	run := func(users int) (ScenarioResult, error) {
		r := ScenarioResult{Users: users, Targets: z.S6Targets}
		fx, err := BenchFixture(users, z.S6Targets)
		if err != nil {
			return r, err
		}
		sim, env, err := startLimitsOff(ctx, cfg, ScenarioS6, fx, s6ProvisionerArgs(z.S6Targets))
		if err != nil {
			return r, err
		}
		defer sim.Close()
		defer env.close()
		targets := benchTargets(z.S6Targets)
		progressf(cfg, "S6: clone %d users into %d orgs, gcsim limits off", users, z.S6Targets)
		runtime.GC()
		resetPeakRSS()
		before := env.statsOf(targets)
		// The clone timeout grows with the size: 10,000 × 20 is ten times S4.
		ccfg := cfg
		ccfg.Timeout = max(cfg.Timeout, time.Duration(users*z.S6Targets)*10*time.Millisecond)
		peakProfile := ""
		if cfg.HeapProfile != "" && users == z.S6Users {
			peakProfile = cfg.HeapProfile + ".s6peak"
		}
		stopSampling := sampleMemory(2*time.Second, peakProfile)
		rep, wall, err := env.clone(ctx, ccfg, CloneSpec{SourceOrg: BenchSourceOrg, Users: benchUsers(users), Targets: targets, RequestedBy: "orgsync-bench"})
		atPeak := stopSampling()
		if err != nil {
			return r, err
		}
		r.PeakRSSMB, r.SimPeakRSSMB = peakRSSMB(), sim.PeakRSSMB()
		r.Note = fmt.Sprintf("highest 2-second sample of %d×%d (the table's peak RSS is VmHWM): %s", users, z.S6Targets, atPeak)
		progressf(cfg, "S6: %s", r.Note)
		if cfg.HeapProfile != "" && users == z.S6Users {
			if err := writeHeapProfile(cfg.HeapProfile + ".s6"); err != nil {
				return r, err
			}
		}
		r.fromReport(rep)
		r.targetMetrics(before, env.statsOf(targets), targets, wall, 0)
		return r, sim.Err()
	}
	small, err := run(half)
	if err != nil {
		return res, err
	}
	debug.FreeOSMemory()
	full, err := run(z.S6Users)
	if err != nil {
		return res, err
	}
	res.fromScale(small, full)
	return res, nil
}

// benchS4 clones S4Users users into S4Targets orgs with gcsim's limits off,
// recording every API call; then stops the pipeline and replays the
// recorded calls directly (one tight loop per org, in parallel) against the
// same gcsim and compares the throughputs. Peak RSS is read when the
// pipeline has finished.
func benchS4(ctx context.Context, cfg BenchConfig) (ScenarioResult, error) {
	z := cfg.Sizes
	res := ScenarioResult{Name: ScenarioS4, Title: "overhead (limits off)", Available: true, Users: z.S4Users, Targets: z.S4Targets}
	fx, err := BenchFixture(z.S4Users, z.S4Targets)
	if err != nil {
		return res, err
	}
	rec, err := newCallRecorder(cfg.StoreDir)
	if err != nil {
		return res, err
	}
	defer rec.Close()
	sim, env, err := startLimitsOff(ctx, cfg, ScenarioS4, fx, nil, orgs.WithTransport(rec))
	if err != nil {
		return res, err
	}
	defer sim.Close()
	defer env.close()
	targets := benchTargets(z.S4Targets)
	all := append([]string{BenchSourceOrg}, targets...)
	progressf(cfg, "S4: clone %d users into %d orgs, gcsim limits off", z.S4Users, z.S4Targets)
	runtime.GC()
	before := env.statsOf(all)
	rec.Start()
	cpu0, simCPU0 := cpuTimeOf("self"), sim.CPUTime()
	rep, wall, err := env.clone(ctx, cfg, CloneSpec{SourceOrg: BenchSourceOrg, Users: benchUsers(z.S4Users), Targets: targets, RequestedBy: "orgsync-bench"})
	cpu1, simCPU1 := cpuTimeOf("self"), sim.CPUTime()
	rec.Stop()
	if err != nil {
		return res, err
	}
	res.PeakRSSMB, res.SimPeakRSSMB = peakRSSMB(), sim.PeakRSSMB()
	if cfg.HeapProfile != "" {
		if err := writeHeapProfile(cfg.HeapProfile); err != nil {
			return res, err
		}
	}
	res.fromReport(rep)
	after := env.statsOf(all)
	res.targetMetrics(before, after, targets, wall, 0)
	res.RateEfficiency, res.RateEfficiencyMin = 0, 0
	res.SourceCalls = benchCalls(diffStats(before[BenchSourceOrg], after[BenchSourceOrg]))
	pipelineCalls := res.SourceCalls + res.TargetCalls
	res.PipelineCallsPerSec = round3(float64(pipelineCalls) / wall.Seconds())
	res.PipelineCPUMicrosPerCall, res.PipelineSimCPUMicros = microsPerCall(cpu1-cpu0, pipelineCalls), microsPerCall(simCPU1-simCPU0, pipelineCalls)

	// The direct side runs with the pipeline stopped: left running, its
	// background work (the reconciler following the new users, the
	// integrator, GC of the pipeline's heap) shares the two cores with
	// gcsim and slowed the replay by a third, at random — which flattered
	// the ratio (measured: direct 4,600–7,800 calls/s running, 9,000–10,700
	// stopped).
	env.close()
	runtime.GC()
	progressf(cfg, "S4: replay the %d recorded calls directly", rec.Count())
	cpu0, simCPU0 = cpuTimeOf("self"), sim.CPUTime()
	replayed, replayWall, err := rec.Replay(ctx)
	if err != nil {
		return res, err
	}
	res.DirectCPUMicrosPerCall, res.DirectSimCPUMicros = microsPerCall(cpuTimeOf("self")-cpu0, replayed), microsPerCall(sim.CPUTime()-simCPU0, replayed)
	res.DirectCalls, res.DirectWallSeconds = replayed, round3(replayWall.Seconds())
	if replayWall > 0 {
		res.DirectCallsPerSec = round3(float64(replayed) / replayWall.Seconds())
	}
	if res.DirectCallsPerSec > 0 {
		res.OverheadRatio = round3(res.PipelineCallsPerSec / res.DirectCallsPerSec)
	}
	if err := sim.Err(); err != nil {
		return res, err
	}
	if replayed != rec.Count() || rec.Count() < pipelineCalls {
		res.Note = fmt.Sprintf("recorded %d calls, replayed %d, gcsim counted %d", rec.Count(), replayed, pipelineCalls)
	}
	return res, nil
}

// benchS5 clones one reference user into S1Targets orgs, waits until the
// reconciler follows the user (its Notifications API socket on the source
// is open), then changes the user's skills at the source through the API —
// one skill added (one the targets lack, so they must create it), one
// proficiency changed — and measures until every target's user has exactly
// the source's skills: reconciler → extractor → resolver → provisioner
// delta plans, under the realistic gcsim settings.
func benchS5(ctx context.Context, cfg BenchConfig) (ScenarioResult, error) {
	n := cfg.Sizes.S1Targets
	res := ScenarioResult{Name: ScenarioS5, Title: "source change → converged", Available: true, Users: 1, Targets: n}
	fx, err := BenchFixture(1, n)
	if err != nil {
		return res, err
	}
	env, err := startBenchEnv(ctx, cfg, "s5", fx, *cfg.Sim, cfg.PipelineRate, int(cfg.PipelineRate), nil)
	if err != nil {
		return res, err
	}
	defer env.close()
	targets := benchTargets(n)
	email := BenchUserEmail(0)
	progressf(cfg, "S5: clone 1 user into %d orgs, then change its skills at the source", n)
	rep, _, err := env.clone(ctx, cfg, CloneSpec{SourceOrg: BenchSourceOrg, Users: []string{email}, Targets: targets, RequestedBy: "orgsync-bench"})
	if err != nil {
		return res, err
	}
	if rep.Status != ReportSucceeded {
		return res, fmt.Errorf("clone before the change: %s (%s)", rep.Status, rep.Reason)
	}
	sim, srcID := env.stats, env.dev.OrgIDs[BenchSourceOrg]
	before, srcBefore := env.statsOf(targets), sim.Stats(srcID)
	wall, err := env.dev.ChangeSkillsAndConverge(ctx, BenchSourceOrg, email, targets, cfg.Timeout)
	if err != nil {
		return res, err
	}
	res.Status = ReportSucceeded
	res.targetMetrics(before, env.statsOf(targets), targets, wall, 0)
	res.RateEfficiency, res.RateEfficiencyMin = 0, 0
	res.SourceCalls = benchCalls(diffStats(srcBefore, sim.Stats(srcID)))
	return res, nil
}

// writeHeapProfile writes the live heap (as of a fresh GC) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("bench: heap profile %s: %w", path, err)
	}
	return f.Close()
}
