package orgsync

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/orgsync/orgsync/pkg/telemetry"
)

// runBench is `orgsync bench`: run the benchmark scenarios, print the
// table, write the JSON results; exit 1 when a budget is not met.
func runBench(ctx context.Context, args []string, out IO) int {
	fs := newFlagSet("bench", "[--out FILE] [--scenarios S1,S2,...] [--quick] [--cpuprofile FILE] [--memprofile FILE]", out)
	outPath := fs.String("out", "bench/results.json", "write the results as JSON to this file (empty: don't)")
	scenarios := fs.String("scenarios", strings.Join(AllScenarios, ","), "comma-separated scenarios to run (S3 runs S2's clone first)")
	quick := fs.Bool("quick", false, "small sizes (a smoke run of the harness): "+sizesString(QuickBenchSizes))
	noBudgets := fs.Bool("no-fail", false, "exit 0 even when a budget is not met")
	logPath := fs.String("log", "", "write the services' logs to this file (default: discarded)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	provArgs := fs.String("provisioner-args", "", `extra provisioner flags for every scenario, e.g. "--max-concurrent-plans 8 --user-concurrency 8"`)
	heapProfile := fs.String("memprofile", "", "write a heap profile to this file when S4's pipeline finishes (its peak), and to FILE.s6 when S6's larger run does")
	sizes := fs.String("sizes", "", `override sizes, e.g. "S2=100x5,S4=400x10,S1=3" (users x orgs; S1: orgs); issue 17's S6: "S6=10000x20"`)
	// 240 MiB leaves room under the 300 MB RSS budget for the ~55 MB that
	// Go does not manage: the binary's pages and the bbolt file mapped.
	memLimit := fs.Int64("memory-limit-mb", 240, "Go soft memory limit of this process in MiB (debug.SetMemoryLimit, as GOMEMLIMIT sets it; 0: none), unless GOMEMLIMIT is set")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	// A deployment sets GOMEMLIMIT below its container limit; the bench
	// process runs every service and NATS at once, so it does the same.
	if os.Getenv("GOMEMLIMIT") == "" && *memLimit > 0 {
		debug.SetMemoryLimit(*memLimit << 20)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(out, "cpu profile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(out, "cpu profile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	store, err := os.MkdirTemp("", "orgsync-bench-")
	if err != nil {
		return fail(out, "temp dir: %v", err)
	}
	defer os.RemoveAll(store)
	cfg := BenchConfig{StoreDir: store, Quick: *quick, Progress: out.Err, HeapProfile: *heapProfile}
	if f := strings.Fields(*provArgs); len(f) > 0 {
		cfg.ServiceArgs = map[string][]string{"provisioner": f}
	}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.ToUpper(strings.TrimSpace(s)); s != "" {
			cfg.Scenarios = append(cfg.Scenarios, s)
		}
	}
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fail(out, "service log: %v", err)
		}
		defer f.Close()
		if cfg.Logger, err = telemetry.NewLogger(f, slog.LevelInfo, "text"); err != nil {
			return fail(out, "service log: %v", err)
		}
	}
	if *sizes != "" {
		base := FullBenchSizes
		if *quick {
			base = QuickBenchSizes
		}
		z, err := parseBenchSizes(*sizes, base)
		if err != nil {
			fs.Usage()
			return fail(out, "--sizes: %v", err)
		}
		cfg.Sizes = z
	}
	if err := cfg.Validate(); err != nil {
		fs.Usage()
		return fail(out, "%v", err)
	}
	res, err := RunBench(ctx, cfg)
	if err != nil {
		return fail(out, "%v", err)
	}
	if err := res.WriteTable(out.Out); err != nil {
		return fail(out, "print results: %v", err)
	}
	if *outPath != "" {
		if err := res.WriteJSONFile(*outPath); err != nil {
			return fail(out, "%v", err)
		}
		fmt.Fprintf(out.Err, "bench: results written to %s\n", *outPath)
	}
	if !res.Passed() && !*noBudgets {
		return fail(out, "bench: a budget was not met (see the table)")
	}
	return ExitOK
}

func sizesString(z BenchSizes) string {
	return fmt.Sprintf("S1 1×%d, S2/S3 %d×%d, S4 %d×%d, S6 %d×%d", z.S1Targets, z.S2Users, z.S2Targets, z.S4Users, z.S4Targets, z.S6Users, z.S6Targets)
}

// parseBenchSizes applies "S2=100x5,S4=400x10,S1=3" to base.
func parseBenchSizes(spec string, base BenchSizes) (BenchSizes, error) {
	for _, item := range strings.Split(spec, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return base, fmt.Errorf("%q: want SCENARIO=USERSxORGS", item)
		}
		var users, orgs int
		if strings.EqualFold(name, ScenarioS1) {
			if _, err := fmt.Sscanf(val, "%d", &orgs); err != nil {
				return base, fmt.Errorf("%q: want S1=ORGS", item)
			}
			base.S1Targets = orgs
			continue
		}
		if _, err := fmt.Sscanf(val, "%dx%d", &users, &orgs); err != nil {
			return base, fmt.Errorf("%q: want SCENARIO=USERSxORGS", item)
		}
		switch strings.ToUpper(name) {
		case ScenarioS2, ScenarioS3:
			base.S2Users, base.S2Targets = users, orgs
		case ScenarioS4:
			base.S4Users, base.S4Targets = users, orgs
		case ScenarioS6:
			base.S6Users, base.S6Targets = users, orgs
		default:
			return base, fmt.Errorf("%q: sizes apply to S1, S2 (and S3), S4 and S6", item)
		}
	}
	return base, nil
}
