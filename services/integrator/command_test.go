package integrator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadCRMFile: adapters per target from YAML; the file must be 0600,
// and no error ever quotes its content (it holds API keys).
func TestLoadCRMFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("crm.yaml", "target1:\n  baseURL: http://127.0.0.1:8089\n  apiKey: sk-live-123\n", 0o600)
	got, err := LoadCRMFile(good)
	if err != nil || got["target1"].APIKey != "sk-live-123" || got["target1"].BaseURL != "http://127.0.0.1:8089" {
		t.Fatalf("LoadCRMFile = %v, %v", got, err)
	}
	if s := got["target1"].String(); strings.Contains(s, "sk-live") {
		t.Errorf("CRMTarget.String shows the key: %s", s)
	}
	if _, err := LoadCRMFile(write("open.yaml", "target1: {apiKey: k}\n", 0o644)); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("group-readable file: %v", err)
	}
	// Keys from the environment: the file holds no secret and may be 0644.
	env := map[string]string{"ORGSYNC_CRM_TARGET_2_API_KEY": "sk-env-789"}
	got, err = LoadCRMFileEnv(write("cm.yaml", "target-2: {baseURL: http://crm.example}\n", 0o644), func(k string) string { return env[k] })
	if err != nil || got["target-2"].APIKey != "sk-env-789" {
		t.Errorf("key from %s: %v, %v", EnvAPIKey("target-2"), got, err)
	}
	for name, body := range map[string]string{
		"scalar.yaml":  "target1: sk-live-456\n",
		"unknown.yaml": "target1:\n  apikey: sk-live-456\n",
	} {
		_, err := LoadCRMFile(write(name, body, 0o600))
		if err == nil || strings.Contains(err.Error(), "sk-live") || !strings.Contains(err.Error(), "line 1") && !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: %v (want an error naming the line, never the content)", name, err)
		}
	}
}
