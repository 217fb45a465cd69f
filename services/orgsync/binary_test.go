package orgsync

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
)

// The command line as users meet it: the built binary, its exit status,
// what goes to stdout and to stderr.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string // removed by TestMain
)

// orgsyncBinary builds cmd/orgsync once per test run.
func orgsyncBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "orgsync-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "orgsync")
		// As `make build` does: the revision, since the go command stamps
		// no VCS information in workspace mode.
		rev, _ := exec.Command("git", "rev-parse", "HEAD").Output()
		out, err := exec.Command("go", "build", "-ldflags", "-X github.com/orgsync/orgsync/services/orgsync.revision="+strings.TrimSpace(string(rev)),
			"-o", binPath, "./cmd/orgsync").CombinedOutput()
		if err != nil {
			binErr = errors.New("go build ./cmd/orgsync: " + err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runBinary runs the binary in an empty directory (no dev store to find).
func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(orgsyncBinary(t), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "ORGSYNC_NATS_URL=", "ORGSYNC_ORGS=")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run orgsync %v: %v", args, err)
	}
	return code, o.String(), e.String()
}

// commandPaths lists every command of the CLI ("clone", "failed list", ...).
func commandPaths() [][]string {
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, s := range c.Commands() {
			p := append(append([]string{}, path...), s.Name())
			out = append(out, p)
			walk(s, p)
		}
	}
	root := (&app{io: IO{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}}).rootCmd()
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	walk(root, nil)
	return out
}

func TestBinaryHelpOnStdout(t *testing.T) {
	t.Parallel()
	paths := append([][]string{{}}, commandPaths()...)
	if len(paths) < 20 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, p := range paths {
		args := append(append([]string{}, p...), "--help")
		code, out, errOut := runBinary(t, args...)
		name := strings.TrimSpace("orgsync " + strings.Join(p, " "))
		if code != ExitOK || errOut != "" || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help: exit %d, stdout %d bytes, stderr %q; want 0, usage on stdout, nothing on stderr", name, code, len(out), errOut)
		}
		if !strings.Contains(out, name) {
			t.Errorf("%s --help does not name %q:\n%s", name, name, out)
		}
		// Go's flag package took `quoted` words as value names ("-nats orgsync dev").
		if strings.Contains(out, "`") || strings.Contains(out, " -all ") || strings.Contains(out, "orgsync dev value") {
			t.Errorf("%s --help has a stray value name:\n%s", name, out)
		}
	}
	if _, out, _ := runBinary(t, "failed", "list", "--help"); strings.Contains(out, "--all") {
		t.Errorf("failed list --help lists retry's --all:\n%s", out)
	}
	if _, out, _ := runBinary(t, "failed", "retry", "--help"); strings.Contains(out, "--output") {
		t.Errorf("failed retry --help lists list's --output:\n%s", out)
	}
	if _, out, _ := runBinary(t, "--help"); !strings.Contains(out, exitCodesHelp) {
		t.Errorf("orgsync --help lacks the exit status table:\n%s", out)
	}
}

func TestBinaryUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"clon"}, []string{`unknown command "clon" for "orgsync"`, "Did you mean this?", "\tclone"}},
		{[]string{"failed", "bogus"}, []string{`unknown command "bogus" for "orgsync failed" (subcommands: list, retry)`}},
		{[]string{"failed", "lst"}, []string{"Did you mean this?", "\tlist"}},
		{[]string{"failed"}, []string{"give a subcommand: list, retry"}},
		{[]string{"clone", "--source", "s", "--user", "a@x.example", "--target", "t", "--timeout", "-1s"}, []string{`invalid argument "-1s" for "--timeout" flag: must be positive`}},
		{[]string{"integrations", "--org", "t", "--state", "BOGUS"}, []string{`invalid argument "BOGUS" for "--state" flag: want one of PENDING, PROVISIONED, FAILED, SKIPPED`}},
		{[]string{"audit"}, []string{`required flag(s) "org" not set`}},
		{[]string{"replay", "--stream", "NOPE", "--from-seq", "1"}, []string{`invalid argument "NOPE" for "--stream" flag: want one of CLONE, CHANGES, SNAPSHOTS, PLANS, INTEGRATIONS, EVENTS`}},
		{[]string{"status"}, []string{"give exactly one request id"}},
		{[]string{"gcsim", "--bogus"}, []string{"flag provided but not defined: -bogus (see orgsync gcsim --help)"}},
	} {
		code, out, errOut := runBinary(t, tc.args...)
		if code != ExitUsage || out != "" {
			t.Errorf("orgsync %v: exit %d, stdout %q; want %d, nothing on stdout", tc.args, code, out, ExitUsage)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("orgsync %v: stderr lacks %q:\n%s", tc.args, w, errOut)
			}
		}
		if strings.Contains(errOut, "would replay") || strings.Contains(errOut, "connect") {
			t.Errorf("orgsync %v: acted before refusing the command line:\n%s", tc.args, errOut)
		}
	}
	if _, out, _ := runBinary(t, "gcsim", "--help"); !strings.Contains(out, "Usage: orgsync gcsim [flags]") {
		t.Errorf("orgsync gcsim --help:\n%s", out)
	}
}

func TestBinaryCompletion(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := runBinary(t, "completion", shell)
		if code != ExitOK || len(out) < 1000 || errOut != "" {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", shell, code, len(out), errOut)
		}
		if shell == "bash" {
			script := filepath.Join(t.TempDir(), "orgsync.bash")
			if err := os.WriteFile(script, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			if msg, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n rejects the completion script: %v\n%s", err, msg)
			}
		}
	}
}

func TestBinaryVersion(t *testing.T) {
	t.Parallel()
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("no git revision to compare with: %v", err)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := runBinary(t, args...)
		if code != ExitOK || !strings.HasPrefix(out, "orgsync ") || !strings.Contains(out, "revision "+strings.TrimSpace(string(rev))) {
			t.Errorf("orgsync %v: exit %d, %q; want the revision %s", args, code, out, rev)
		}
	}
}

// TestBinaryExitCodes produces each exit status of the table in --help
// (1 with a job's failed target: TestCLICloneAndStatus; 4, stopped
// following: TestCloneWaitInterrupted).
func TestBinaryExitCodes(t *testing.T) {
	t.Parallel()
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code int
		args []string
		want string
	}{
		{ExitOK, []string{"version"}, ""},
		{ExitFailed, []string{"nats-creds", "--out", filepath.Join(blocker, "secrets")}, "orgsync nats-creds: "},
		{ExitUsage, []string{"clone", "--bogus"}, "unknown flag: --bogus"},
		{ExitUnreachable, []string{"status", "some-id", "--nats", "nats://127.0.0.1:1"}, "orgsync status: "},
		{ExitUnreachable, []string{"orgs", "check", "--nats", "nats://127.0.0.1:1"}, "orgsync orgs check: "},
	} {
		code, _, errOut := runBinary(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("orgsync %v: exit %d, want %d with %q\nstderr %s", tc.args, code, tc.code, tc.want, errOut)
		}
	}
}
