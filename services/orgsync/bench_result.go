package orgsync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orgsync/orgsync/services/gcsim"
)

// BenchResult is one run of the benchmark, as written to results.json.
type BenchResult struct {
	StartedAt    time.Time  `json:"startedAt"`
	GoVersion    string     `json:"goVersion"`
	NumCPU       int        `json:"numCPU"`
	GOMAXPROCS   int        `json:"gomaxprocs"`
	Quick        bool       `json:"quick"`
	Sizes        BenchSizes `json:"sizes"`
	PipelineRate float64    `json:"pipelineRatePerOrg"`
	// MemoryLimitMB is the Go soft memory limit of the process (0: none).
	MemoryLimitMB int64 `json:"memoryLimitMB,omitempty"`
	// Sim describes gcsim's settings in the realistic scenarios.
	Sim         string           `json:"sim"`
	WallSeconds float64          `json:"wallSeconds"`
	Scenarios   []ScenarioResult `json:"scenarios"`
	Budgets     []BudgetCheck    `json:"budgets"`
}

// ScenarioResult is what one scenario measured. Calls are Genesys API
// requests gcsim answered with anything but 429, token grants excluded.
type ScenarioResult struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Available is false for a scenario the system cannot run yet (Note says why).
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
	Users     int    `json:"users,omitempty"`
	Targets   int    `json:"targets,omitempty"`
	// Status of the clone request's report ("succeeded", "failed").
	Status      string  `json:"status,omitempty"`
	WallSeconds float64 `json:"wallSeconds,omitempty"`
	// SourceCalls: calls to the source org (extraction).
	SourceCalls int `json:"sourceCalls,omitempty"`
	// TargetCalls: calls to all target orgs (pre-flight and provisioning).
	TargetCalls int `json:"targetCalls,omitempty"`
	// CallsPerUserPerTarget = TargetCalls ÷ (Users × Targets).
	CallsPerUserPerTarget float64 `json:"callsPerUserPerTarget,omitempty"`
	// TargetOps counts the target calls per operation ("METHOD /route"),
	// summed over the targets (429 answers included).
	TargetOps map[string]int `json:"targetOps,omitempty"`
	// RateLimited counts 429 answers in the target orgs.
	RateLimited int `json:"rateLimited"`
	// FailedUsers counts users the report says failed in some target
	// (a 429 the client could not recover from ends up there).
	FailedUsers int `json:"failedUsers"`
	// RateEfficiency, per target org, = calls to that org ÷ (budget ×
	// wall seconds), budget = min(pipeline rate, gcsim per-token rate/60);
	// the mean and the lowest over the targets.
	RateEfficiency    float64 `json:"rateEfficiency,omitempty"`
	RateEfficiencyMin float64 `json:"rateEfficiencyMin,omitempty"`
	// S4: throughput in calls/second of the pipeline (all API calls of the
	// run ÷ its wall time) and of the same calls replayed directly.
	PipelineCallsPerSec float64 `json:"pipelineCallsPerSec,omitempty"`
	DirectCalls         int     `json:"directCalls,omitempty"`
	DirectWallSeconds   float64 `json:"directWallSeconds,omitempty"`
	DirectCallsPerSec   float64 `json:"directCallsPerSec,omitempty"`
	OverheadRatio       float64 `json:"overheadRatio,omitempty"`
	// S4: CPU time per call (µs), user + system, of the orgsync process
	// (every service, NATS, the bench's report; during the replay: the
	// replay client) and of the gcsim process, in the pipeline run and in
	// the replay. Unlike calls/second, they hardly move with the load of
	// the machine: what the ratio would be on two idle cores is
	// (direct + sim) ÷ (pipeline + sim).
	PipelineCPUMicrosPerCall float64 `json:"pipelineCpuMicrosPerCall,omitempty"`
	PipelineSimCPUMicros     float64 `json:"pipelineSimCpuMicrosPerCall,omitempty"`
	DirectCPUMicrosPerCall   float64 `json:"directCpuMicrosPerCall,omitempty"`
	DirectSimCPUMicros       float64 `json:"directSimCpuMicrosPerCall,omitempty"`
	// PeakRSSMB is the orgsync process's VmHWM (MiB) when the pipeline
	// finished: every service, the embedded NATS server and the bench
	// client. S4's gcsim runs in a process of its own; SimPeakRSSMB is its.
	PeakRSSMB    float64 `json:"peakRSSMB,omitempty"`
	SimPeakRSSMB float64 `json:"simPeakRSSMB,omitempty"`
	// S6: the run at half the users (its users and wall time) and the
	// exponent of wall time in users × orgs between it and the full run:
	// ln(wall ÷ half wall) ÷ ln(users ÷ half users); 1 is linear.
	HalfUsers       int     `json:"halfUsers,omitempty"`
	HalfWallSeconds float64 `json:"halfWallSeconds,omitempty"`
	ScalingExponent float64 `json:"scalingExponent,omitempty"`
}

// fromScale fills an S6 result from its half-size and full-size runs.
func (s *ScenarioResult) fromScale(half, full ScenarioResult) {
	users, title := s.Users, s.Title
	*s = full
	s.Name, s.Title, s.Available, s.Users = ScenarioS6, title, true, users
	s.HalfUsers, s.HalfWallSeconds = half.Users, half.WallSeconds
	s.FailedUsers += half.FailedUsers
	if half.Status != ReportSucceeded {
		s.Status = half.Status
	}
	if half.WallSeconds > 0 && full.WallSeconds > 0 && full.Users > half.Users {
		s.ScalingExponent = round3(math.Log(full.WallSeconds/half.WallSeconds) / math.Log(float64(full.Users)/float64(half.Users)))
	}
	s.Note = fmt.Sprintf("%d×%d in %.1f s, %d×%d in %.1f s: wall ∝ (users×orgs)^%.2f",
		half.Users, half.Targets, half.WallSeconds, full.Users, full.Targets, full.WallSeconds, s.ScalingExponent)
	if full.Note != "" {
		s.Note += "; " + full.Note
	}
}

// BudgetCheck is one budget and whether the run met it.
type BudgetCheck struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Op       string  `json:"op"` // "<=" or ">="
	Limit    float64 `json:"limit"`
	Value    float64 `json:"value"`
	Pass     bool    `json:"pass"`
	// NotJudged: a --quick run's figure of a budget set for the full
	// size (calls per user, ratios, RSS, the exponent): shown, not judged.
	NotJudged bool `json:"notJudged,omitempty"`
}

// Passed reports whether every judged budget was met.
func (r *BenchResult) Passed() bool {
	for _, b := range r.Budgets {
		if !b.Pass && !b.NotJudged {
			return false
		}
	}
	return true
}

// judgedAtQuickSize are the budgets that hold at any size: a quick run
// judges only those (fixed costs per target spread over 5 users, or a
// ratio of 40 users, say nothing about the full-size budgets).
var judgedAtQuickSize = map[string]bool{"failed users": true, "unrecovered 429 (failed users)": true, "scenario did not finish": true}

// Scenario returns the named scenario's result (nil if it did not run).
func (r *BenchResult) Scenario(name string) *ScenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// checkBudgets fills Budgets from the scenarios that ran.
func (r *BenchResult) checkBudgets() {
	r.Budgets = nil
	check := func(s, metric, op string, v, limit float64, pass bool) {
		r.Budgets = append(r.Budgets, BudgetCheck{Scenario: s, Metric: metric, Op: op, Limit: limit, Value: round3(v), Pass: pass,
			NotJudged: r.Quick && !judgedAtQuickSize[metric]})
	}
	atMost := func(s, metric string, v, limit float64) { check(s, metric, "<=", v, limit, v <= limit) }
	atLeast := func(s, metric string, v, limit float64) { check(s, metric, ">=", v, limit, v >= limit) }
	for _, s := range r.Scenarios {
		if s.Status == "error" {
			atMost(s.Name, "scenario did not finish", 1, 0)
		}
	}
	if s := r.Scenario(ScenarioS1); s != nil {
		atMost(ScenarioS1, "failed users", float64(s.FailedUsers), 0)
	}
	if s := r.Scenario(ScenarioS2); s != nil {
		atMost(ScenarioS2, "calls/user/target", s.CallsPerUserPerTarget, BudgetS2CallsPerUser)
		atLeast(ScenarioS2, "rate efficiency", s.RateEfficiency, BudgetS2Efficiency)
		atMost(ScenarioS2, "unrecovered 429 (failed users)", float64(s.FailedUsers), 0)
	}
	if s := r.Scenario(ScenarioS3); s != nil {
		atMost(ScenarioS3, "calls/user/target", s.CallsPerUserPerTarget, BudgetS3CallsPerUser)
		atMost(ScenarioS3, "failed users", float64(s.FailedUsers), 0)
	}
	if s := r.Scenario(ScenarioS4); s != nil {
		atMost(ScenarioS4, "calls/user/target", s.CallsPerUserPerTarget, BudgetS4CallsPerUser)
		atLeast(ScenarioS4, "overhead ratio", s.OverheadRatio, BudgetS4OverheadRatio)
		atMost(ScenarioS4, "peak RSS MB", s.PeakRSSMB, BudgetS4PeakRSSMB)
		atMost(ScenarioS4, "failed users", float64(s.FailedUsers), 0)
	}
	if s := r.Scenario(ScenarioS6); s != nil {
		atMost(ScenarioS6, "peak RSS MB", s.PeakRSSMB, BudgetS6PeakRSSMB)
		atMost(ScenarioS6, "wall-time exponent", s.ScalingExponent, BudgetS6ScalingExponent)
		atMost(ScenarioS6, "failed users", float64(s.FailedUsers), 0)
	}
	if s := r.Scenario(ScenarioS5); s != nil && s.Available {
		atMost(ScenarioS5, "change → converged s", s.WallSeconds, BudgetS5ConvergeSeconds)
	}
}

// benchCalls counts the API calls in st: every request but token grants
// and 429 answers.
func benchCalls(st gcsim.Stats) int {
	return st.TotalRequests() - st.Requests["POST /oauth/token"] - st.RateLimited
}

// diffStats returns after − before for the counters benchCalls reads.
func diffStats(before, after gcsim.Stats) gcsim.Stats {
	d := gcsim.Stats{Requests: map[string]int{}, RateLimited: after.RateLimited - before.RateLimited}
	for op, n := range after.Requests {
		if m := n - before.Requests[op]; m != 0 {
			d.Requests[op] = m
		}
	}
	return d
}

// OrgBudget is the rate budget of one target org in requests/second:
// min(pipeline rate, gcsim's per-token limit per second); a disabled gcsim
// limit (< 0) leaves the pipeline rate.
func OrgBudget(pipelineRate float64, simPerMinute int) float64 {
	if simPerMinute < 0 {
		return pipelineRate
	}
	if simPerMinute == 0 {
		simPerMinute = gcsim.DefaultRateLimitPerMinute
	}
	return math.Min(pipelineRate, float64(simPerMinute)/60)
}

// targetMetrics fills s's call, 429 and efficiency figures from gcsim's
// counters of each target before and after the run.
func (s *ScenarioResult) targetMetrics(before, after map[string]gcsim.Stats, targets []string, wall time.Duration, budget float64) {
	s.WallSeconds = round3(wall.Seconds())
	s.TargetCalls, s.RateLimited, s.TargetOps = 0, 0, map[string]int{}
	effSum, effMin := 0.0, math.Inf(1)
	for _, t := range targets {
		d := diffStats(before[t], after[t])
		calls := benchCalls(d)
		for op, n := range d.Requests {
			if op != "POST /oauth/token" {
				s.TargetOps[op] += n
			}
		}
		s.TargetCalls += calls
		s.RateLimited += d.RateLimited
		eff := 0.0
		if wall > 0 && budget > 0 {
			eff = float64(calls) / (budget * wall.Seconds())
		}
		effSum += eff
		effMin = math.Min(effMin, eff)
	}
	if n := s.Users * len(targets); n > 0 {
		s.CallsPerUserPerTarget = round3(float64(s.TargetCalls) / float64(n))
	}
	if len(targets) > 0 {
		s.RateEfficiency, s.RateEfficiencyMin = round3(effSum/float64(len(targets))), round3(effMin)
	}
}

// countFailedUsers counts users that failed in some target of rep, and
// sets Status.
func (s *ScenarioResult) fromReport(rep *Report) {
	if rep == nil {
		s.Status = "no report"
		return
	}
	s.Status = rep.Status
	failed := map[string]bool{}
	for _, t := range rep.Targets {
		for _, u := range t.Users {
			if u.Status == "failed" {
				failed[u.ExternalID] = true
			}
		}
		if t.Status == "failed" && len(t.Users) == 0 {
			failed["target "+t.Org] = true
		}
	}
	s.FailedUsers = len(failed)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func simSettings(c gcsim.Config) string {
	rate := "off"
	if c.RateLimitPerMinute >= 0 {
		r := c.RateLimitPerMinute
		if r == 0 {
			r = gcsim.DefaultRateLimitPerMinute
		}
		rate = fmt.Sprintf("%d/min per token", r)
	}
	return fmt.Sprintf("latency %v + [0,%v) jitter, rate limit %s, 404 window %v, activation %v",
		c.Latency, c.LatencyJitter, rate, c.NotFoundAfterCreate, c.ActivationDelay)
}

// WriteTable prints the scenarios and the budgets.
func (r *BenchResult) WriteTable(w io.Writer) error {
	limit := "none"
	if r.MemoryLimitMB > 0 {
		limit = fmt.Sprintf("%d MiB", r.MemoryLimitMB)
	}
	fmt.Fprintf(w, "orgsync bench — %s, %d CPU (GOMAXPROCS %d), pipeline budget %.0f req/s per org, Go memory limit %s\n", r.GoVersion, r.NumCPU, r.GOMAXPROCS, r.PipelineRate, limit)
	fmt.Fprintf(w, "gcsim (S1–S3): %s; S4, S6: rate limit, latency and consistency windows off\n\n", r.Sim)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tusers×orgs\tstatus\twall s\tcalls/user/org\t429s\tfailed\trate eff (min)\tpipeline/direct calls/s\toverhead\tpeak RSS MB")
	for _, s := range r.Scenarios {
		if !s.Available {
			fmt.Fprintf(tw, "%s %s\t-\tnot available yet\t\t\t\t\t\t\t\t\n", s.Name, s.Title)
			continue
		}
		eff, thr, over, rss := "-", "-", "-", "-"
		if s.RateEfficiency > 0 {
			eff = fmt.Sprintf("%.2f (%.2f)", s.RateEfficiency, s.RateEfficiencyMin)
		}
		if s.DirectCallsPerSec > 0 {
			thr = fmt.Sprintf("%.0f / %.0f", s.PipelineCallsPerSec, s.DirectCallsPerSec)
			over = fmt.Sprintf("%.2f", s.OverheadRatio)
		}
		if s.PeakRSSMB > 0 {
			rss = fmt.Sprintf("%.0f", s.PeakRSSMB)
			if s.SimPeakRSSMB > 0 {
				rss += fmt.Sprintf(" (gcsim %.0f)", s.SimPeakRSSMB)
			}
		}
		fmt.Fprintf(tw, "%s %s\t%d×%d\t%s\t%.1f\t%.2f\t%d\t%d\t%s\t%s\t%s\t%s\n",
			s.Name, s.Title, s.Users, s.Targets, s.Status, s.WallSeconds, s.CallsPerUserPerTarget,
			s.RateLimited, s.FailedUsers, eff, thr, over, rss)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		if s.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", s.Name, s.Note)
		}
		if s.PipelineCPUMicrosPerCall > 0 {
			fmt.Fprintf(w, "%s: CPU per call: pipeline %.0f µs + gcsim %.0f µs; replay client %.0f µs + gcsim %.0f µs\n",
				s.Name, s.PipelineCPUMicrosPerCall, s.PipelineSimCPUMicros, s.DirectCPUMicrosPerCall, s.DirectSimCPUMicros)
		}
	}
	fmt.Fprintln(w, "\nbudgets:")
	if r.Quick {
		fmt.Fprintln(w, "  (--quick: only failed users are judged; the other budgets are set for the full sizes)")
	}
	for _, b := range r.Budgets {
		verdict := "PASS"
		switch {
		case b.NotJudged:
			verdict = "-"
		case !b.Pass:
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "  %-4s %s %-32s %10.3f %s %g\n", verdict, b.Scenario, b.Metric, b.Value, b.Op, b.Limit)
	}
	fmt.Fprintf(w, "total wall time %.0f s\n", r.WallSeconds)
	return nil
}

// WriteJSONFile writes r as indented JSON to path (creating its directory).
func (r *BenchResult) WriteJSONFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bench: results dir %s: %w", dir, err)
		}
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// peakRSSMB reads the process's peak resident set size (VmHWM) in MiB from
// /proc/self/status; 0 where that file does not exist.
func peakRSSMB() float64 { return peakRSSMBOf("/proc/self/status") }

// resetPeakRSS starts VmHWM afresh (Linux: clear_refs 5), so a scenario's
// peak is its own, not an earlier scenario's; ignored where unsupported.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// cpuTimeOf is the CPU time (user + system) a process has used so far,
// from /proc/PID/stat ("self" for this one); 0 where unknown.
func cpuTimeOf(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces, in parentheses):
	// utime and stime are the 14th and 15th fields, in clock ticks (100/s).
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0
	}
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// microsPerCall is d spread over calls, in µs.
func microsPerCall(d time.Duration, calls int) float64 {
	if calls <= 0 {
		return 0
	}
	return round3(float64(d.Microseconds()) / float64(calls))
}

// memSample is what the process's resident memory is made of at one time
// (MiB): anonymous (the Go heap, stacks, runtime) and file-backed (mmapped
// files: bbolt), and the Go heap's live bytes and what the runtime holds
// from the OS.
type memSample struct {
	RSS, Anon, File, HeapLive, GoMapped float64
}

func (m memSample) String() string {
	return fmt.Sprintf("RSS %.0f MB = anon %.0f + file %.0f; Go heap live %.0f MB, Go runtime total %.0f MB", m.RSS, m.Anon, m.File, m.HeapLive, m.GoMapped)
}

// sampleMemory samples the process's memory every interval until stop is
// called, which returns the sample of the highest RSS: what the peak was
// made of (VmHWM says only how high it was). With a profile path, the heap
// profile (as of the last GC) is written there at each new peak.
func sampleMemory(interval time.Duration, profile string) (stop func() memSample) {
	done, out := make(chan struct{}), make(chan memSample, 1)
	go func() {
		var peak memSample
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if m := readMemSample(); m.RSS > peak.RSS {
				peak = m
				if profile != "" {
					if f, err := os.Create(profile); err == nil {
						_ = pprof.Lookup("heap").WriteTo(f, 0)
						_ = f.Close()
					}
				}
			}
			select {
			case <-done:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() memSample { close(done); return <-out }
}

func readMemSample() memSample {
	var m memSample
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			key, rest, ok := strings.Cut(line, ":")
			var kb float64
			if !ok {
				continue
			}
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kb); err != nil {
				continue
			}
			switch key {
			case "VmRSS":
				m.RSS = kb / 1024
			case "RssAnon":
				m.Anon = kb / 1024
			case "RssFile":
				m.File = kb / 1024
			}
		}
	}
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}}
	metrics.Read(samples)
	m.HeapLive = float64(samples[0].Value.Uint64()) / (1 << 20)
	m.GoMapped = float64(samples[1].Value.Uint64()) / (1 << 20)
	return m
}

// peakRSSMBOf reads VmHWM (MiB) from a /proc/PID/status file; 0 if unknown.
func peakRSSMBOf(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb float64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kb); err == nil {
				return round3(kb / 1024)
			}
		}
	}
	return 0
}
