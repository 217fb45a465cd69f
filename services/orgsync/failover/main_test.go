package failover_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binaries are built once per test run, by import path, into binDir.
var binaries = map[string]string{
	"auth":        "github.com/orgsync/orgsync/services/auth/cmd/auth",
	"extractor":   "github.com/orgsync/orgsync/services/extractor/cmd/extractor",
	"resolver":    "github.com/orgsync/orgsync/services/resolver/cmd/resolver",
	"provisioner": "github.com/orgsync/orgsync/services/provisioner/cmd/provisioner",
	"orgsync":     "github.com/orgsync/orgsync/services/orgsync/cmd/orgsync",
	"nats-server": "github.com/nats-io/nats-server/v2",
}

var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "orgsync-failover-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover: temp dir:", err)
		os.Exit(1)
	}
	binDir = dir
	buildErr = build(dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles every binary of the tests with the workspace's go.
func build(dir string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, pkg := range binaries {
		args = append(args, pkg)
	}
	cmd := exec.Command("go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return nil
}

// requireBinaries skips under -short and fails when the build failed.
func requireBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("failure tests start real service processes (and build them first); skipped with -short")
	}
	if buildErr != nil {
		t.Fatalf("build binaries: %v", buildErr)
	}
}

// bin is the path of a built binary.
func bin(name string) string { return filepath.Join(binDir, name) }

// fullSize reports whether ORGSYNC_FAILOVER_FULL=1 asks for the full-size
// scenarios.
func fullSize() bool { return os.Getenv("ORGSYNC_FAILOVER_FULL") == "1" }
