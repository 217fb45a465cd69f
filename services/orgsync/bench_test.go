package orgsync

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/services/gcsim"
)

// TestBenchQuickRun runs every scenario of the harness at smoke size with
// gcsim's latency and rate limit off and checks that the figures hang
// together: every clone succeeded, calls per user are the target calls
// divided by users × targets, re-running costs fewer calls than cloning,
// S4 replays every recorded call and its ratio is pipeline ÷ direct, S5's
// source change converges as a delta, and the JSON and the table carry it
// all.
func TestBenchQuickRun(t *testing.T) {
	t.Parallel()
	sim := gcsim.Config{RateLimitPerMinute: -1, NotFoundAfterCreate: 20 * time.Millisecond, ActivationDelay: 20 * time.Millisecond}
	cfg := BenchConfig{
		StoreDir: t.TempDir(), Quick: true, Sim: &sim, Logger: testLogger(t), PipelineRate: 200,
		Sizes:   BenchSizes{S1Targets: 2, S2Users: 5, S2Targets: 2, S4Users: 5, S4Targets: 2, S6Users: 6, S6Targets: 2},
		Timeout: time.Minute, SimCommand: testSimCommand,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunBench(ctx, cfg)
	if err != nil {
		t.Fatalf("RunBench: %v", err)
	}
	for _, name := range AllScenarios {
		s := res.Scenario(name)
		if s == nil {
			t.Fatalf("scenario %s missing from the result", name)
		}
		if s.Status != ReportSucceeded || s.FailedUsers != 0 {
			t.Errorf("%s: status %q, %d failed users", name, s.Status, s.FailedUsers)
		}
		if s.TargetCalls == 0 || s.WallSeconds <= 0 {
			t.Errorf("%s: %d target calls in %.3f s, want both > 0", name, s.TargetCalls, s.WallSeconds)
		}
		opsSum := 0
		for _, n := range s.TargetOps {
			opsSum += n
		}
		if opsSum-s.RateLimited != s.TargetCalls {
			t.Errorf("%s: operations sum to %d (−%d 429s), target calls %d", name, opsSum, s.RateLimited, s.TargetCalls)
		}
		want := float64(s.TargetCalls) / float64(s.Users*s.Targets)
		if math.Abs(s.CallsPerUserPerTarget-want) > 0.001 {
			t.Errorf("%s: calls/user/target %.3f, want %d/(%d×%d) = %.3f", name, s.CallsPerUserPerTarget, s.TargetCalls, s.Users, s.Targets, want)
		}
	}
	s2, s3, s4 := res.Scenario(ScenarioS2), res.Scenario(ScenarioS3), res.Scenario(ScenarioS4)
	if s3.TargetCalls >= s2.TargetCalls {
		t.Errorf("re-run cost %d calls, first run %d: nothing to do must be cheaper", s3.TargetCalls, s2.TargetCalls)
	}
	if _, writes := s3.TargetOps["POST /api/v2/users"]; writes {
		t.Errorf("re-run created users: %v", s3.TargetOps)
	}
	// Without a gcsim limit the budget is the pipeline rate.
	wantEff := float64(s2.TargetCalls) / float64(s2.Targets) / (cfg.PipelineRate * s2.WallSeconds)
	if math.Abs(s2.RateEfficiency-wantEff) > 0.01*wantEff+0.002 {
		t.Errorf("S2 rate efficiency %.3f, want ≈ %.3f (calls per target ÷ (pipeline rate × wall))", s2.RateEfficiency, wantEff)
	}
	if s4.DirectCalls != s4.TargetCalls+s4.SourceCalls {
		t.Errorf("S4 replayed %d calls, the pipeline made %d (+%d source)", s4.DirectCalls, s4.TargetCalls, s4.SourceCalls)
	}
	if s4.DirectCallsPerSec <= 0 || math.Abs(s4.OverheadRatio-s4.PipelineCallsPerSec/s4.DirectCallsPerSec) > 0.01 {
		t.Errorf("S4 overhead %.3f, want pipeline %.1f ÷ direct %.1f", s4.OverheadRatio, s4.PipelineCallsPerSec, s4.DirectCallsPerSec)
	}
	if s4.PeakRSSMB <= 0 || s4.SimPeakRSSMB <= 0 {
		t.Errorf("S4 peak RSS %.1f MB (gcsim's process %.1f MB), want both > 0 (VmHWM)", s4.PeakRSSMB, s4.SimPeakRSSMB)
	}
	// S6 ran twice (half the users, then all) and compared the walls.
	if s6 := res.Scenario(ScenarioS6); s6.HalfUsers != 3 || s6.HalfWallSeconds <= 0 || s6.PeakRSSMB <= 0 ||
		math.Abs(s6.ScalingExponent-math.Log(s6.WallSeconds/s6.HalfWallSeconds)/math.Log(2)) > 0.01 {
		t.Errorf("S6: half run %d users in %.3f s, full %d in %.3f s, exponent %.3f, peak RSS %.1f MB",
			s6.HalfUsers, s6.HalfWallSeconds, s6.Users, s6.WallSeconds, s6.ScalingExponent, s6.PeakRSSMB)
	}
	// S5 measured a delta: fewer calls than cloning the user, and no user
	// created.
	s5, s1 := res.Scenario(ScenarioS5), res.Scenario(ScenarioS1)
	if s5.CallsPerUserPerTarget >= s1.CallsPerUserPerTarget {
		t.Errorf("S5 delta cost %.2f calls/user/target, the clone (S1) %.2f: a delta must be cheaper", s5.CallsPerUserPerTarget, s1.CallsPerUserPerTarget)
	}
	if _, created := s5.TargetOps["POST /api/v2/users"]; created {
		t.Errorf("S5 created users: %v", s5.TargetOps)
	}
	if len(res.Budgets) == 0 {
		t.Error("no budgets checked")
	}
	// A smoke run judges only what holds at any size (failed users): the
	// other budgets are shown, not judged, so it passes when nothing failed.
	notJudged := 0
	for _, b := range res.Budgets {
		if b.NotJudged {
			notJudged++
		} else if !judgedAtQuickSize[b.Metric] {
			t.Errorf("quick run judged %s %s", b.Scenario, b.Metric)
		}
	}
	if notJudged == 0 || !res.Passed() {
		t.Errorf("quick run: %d budgets not judged, passed %v: %+v", notJudged, res.Passed(), res.Budgets)
	}

	path := filepath.Join(t.TempDir(), "bench", "results.json")
	if err := res.WriteJSONFile(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back BenchResult
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("results.json does not decode: %v", err)
	}
	if len(back.Scenarios) != len(AllScenarios) || back.Scenario(ScenarioS2).TargetCalls != s2.TargetCalls {
		t.Errorf("results.json round trip lost data: %s", raw)
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"S1 ", "S2 ", "S3 ", "S4 ", "S5 ", "S6 ", "change → converged", "wall-time exponent", "budgets:", "calls/user/target"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestBenchMetrics checks the formulas on fixed gcsim counters.
func TestBenchMetrics(t *testing.T) {
	t.Parallel()
	if got := OrgBudget(10, 300); got != 5 {
		t.Errorf("OrgBudget(10, 300/min) = %v, want 5", got)
	}
	if got := OrgBudget(10, -1); got != 10 {
		t.Errorf("OrgBudget(10, off) = %v, want 10", got)
	}
	st := func(calls, tokens, throttled int) gcsim.Stats {
		return gcsim.Stats{Requests: map[string]int{"GET /api/v2/users": calls + throttled, "POST /oauth/token": tokens}, RateLimited: throttled}
	}
	before := map[string]gcsim.Stats{"a": st(10, 1, 0), "b": st(0, 0, 0)}
	after := map[string]gcsim.Stats{"a": st(110, 2, 7), "b": st(50, 1, 0)}
	s := ScenarioResult{Users: 10}
	s.targetMetrics(before, after, []string{"a", "b"}, 20*time.Second, 5)
	// a: 100 calls, 7 429s; b: 50 calls. Budget 5 req/s × 20 s = 100 per org.
	if s.TargetCalls != 150 || s.RateLimited != 7 || s.CallsPerUserPerTarget != 7.5 {
		t.Errorf("calls %d, 429s %d, per user %v; want 150, 7, 7.5", s.TargetCalls, s.RateLimited, s.CallsPerUserPerTarget)
	}
	if s.RateEfficiency != 0.75 || s.RateEfficiencyMin != 0.5 {
		t.Errorf("efficiency %v (min %v), want 0.75 (0.5)", s.RateEfficiency, s.RateEfficiencyMin)
	}
	r := &BenchResult{Scenarios: []ScenarioResult{
		{Name: ScenarioS2, Available: true, CallsPerUserPerTarget: 7.9, RateEfficiency: 0.8},
		{Name: ScenarioS3, Available: true, CallsPerUserPerTarget: 2},
	}}
	r.checkBudgets()
	var failed []string
	for _, b := range r.Budgets {
		if !b.Pass {
			failed = append(failed, b.Scenario+" "+b.Metric)
		}
	}
	if len(failed) != 1 || failed[0] != "S2 rate efficiency" || r.Passed() {
		t.Errorf("failed budgets %v, want only S2 rate efficiency", failed)
	}
	if err := (BenchConfig{StoreDir: "x", Scenarios: []string{"S9"}}).Validate(); err == nil || !strings.Contains(err.Error(), `unknown scenario "S9"`) {
		t.Errorf("Validate with S9: %v", err)
	}
}
