package orgsync

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	natsconf "github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/orgsync/orgsync/pkg/deadletter"
	"github.com/orgsync/orgsync/pkg/natsx"
)

var update = flag.Bool("update", false, "rewrite the generated NATS authorization in deploy/")

// authorizationConfig is deploy's authorization block, generated from
// natsx.Permissions.
func authorizationConfig(t *testing.T) string {
	t.Helper()
	conf, err := natsx.DeployAuthorizationConfig()
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

// setNATSEnv sets what the deployed NATS configs read from the environment
// (real nkeys: the server validates them).
func setNATSEnv(t *testing.T) {
	for _, role := range natsx.Roles() {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		t.Setenv(natsx.NkeyEnv(role), pub)
	}
	t.Setenv("ORGSYNC_JS_KEY", "test-key")
	t.Setenv("POD_NAME", "nats-0")
}

var configMapAuth = regexp.MustCompile(`(?ms)^  authorization\.conf: \|\n(.*?)^---\n`)

// TestNATSAuthorizationConfig: deploy/nats/authorization.conf and the
// Kubernetes nats-config carry exactly the permissions `orgsync dev` runs
// with (-update rewrites them).
func TestNATSAuthorizationConfig(t *testing.T) {
	want := authorizationConfig(t)
	path := filepath.Join(repoRoot, "deploy", "nats", "authorization.conf")
	k8sPath := filepath.Join(repoRoot, "deploy", "k8s", "10-nats.yaml")
	k8s, err := os.ReadFile(k8sPath)
	if err != nil {
		t.Fatal(err)
	}
	indented := "    " + strings.ReplaceAll(strings.TrimSuffix(want, "\n"), "\n", "\n    ") + "\n"
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		loc := configMapAuth.FindSubmatchIndex(k8s)
		if loc == nil {
			t.Fatalf("%s: no authorization.conf key in nats-config", k8sPath)
		}
		k8s = append(append(append([]byte{}, k8s[:loc[2]]...), indented...), k8s[loc[3]:]...)
		if err := os.WriteFile(k8sPath, k8s, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("deploy/nats/authorization.conf is not natsx.DeployAuthorizationConfig() (err %v); run go test ./services/orgsync -run TestNATSAuthorizationConfig -update", err)
	}
	if m := configMapAuth.FindSubmatch(k8s); m == nil || string(m[1]) != indented {
		t.Errorf("deploy/k8s/10-nats.yaml nats-config authorization.conf differs from natsx.DeployAuthorizationConfig(); run with -update")
	}
	// The buckets and streams the permissions name are the ones the code uses.
	if deadletter.Bucket != natsx.FailedBucket || deadletter.AdvisoryStream != natsx.AdvisoryStream {
		t.Error("pkg/deadletter names a bucket or stream the permissions do not")
	}
}

// checkNATSSecurity asserts a parsed nats-server config authorizes every
// orgsync identity, serves clients and routes over TLS and encrypts
// JetStream.
func checkNATSSecurity(t *testing.T, where string, m map[string]any) {
	t.Helper()
	authz, _ := m["authorization"].(map[string]any)
	users, _ := authz["users"].([]any)
	nkeysSeen := map[string]bool{}
	for _, u := range users {
		um, _ := u.(map[string]any)
		if _, ok := um["permissions"].(map[string]any); !ok {
			t.Errorf("%s: a user without permissions: %v", where, um["nkey"])
		}
		nkeysSeen[fmt.Sprint(um["nkey"])] = true
	}
	for _, role := range natsx.Roles() {
		if !nkeysSeen[os.Getenv(natsx.NkeyEnv(role))] {
			t.Errorf("%s: no NATS user for %s", where, role)
		}
	}
	for name, block := range map[string]any{"tls": m["tls"], "cluster.tls": nested(m, "cluster", "tls")} {
		tls, _ := block.(map[string]any)
		if tls == nil || tls["cert_file"] == nil || tls["key_file"] == nil || tls["ca_file"] == nil {
			t.Errorf("%s: no %s block with cert_file, key_file and ca_file", where, name)
		}
	}
	if v, _ := nested(m, "cluster", "tls").(map[string]any); v != nil && v["verify"] != true {
		t.Errorf("%s: routes do not verify each other's certificates", where)
	}
	js, _ := m["jetstream"].(map[string]any)
	if c := fmt.Sprint(js["cipher"]); c != "chacha" && c != "aes" {
		t.Errorf("%s: JetStream cipher %q, want chacha or aes", where, c)
	}
	if k := fmt.Sprint(js["key"]); k != os.Getenv("ORGSYNC_JS_KEY") {
		t.Errorf("%s: JetStream key is not taken from $ORGSYNC_JS_KEY", where)
	}
}

func nested(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	return v
}

// TestNATSSecurityAsDeployed parses the compose cluster's configs and the
// Kubernetes nats-config with their includes, as nats-server would.
func TestNATSSecurityAsDeployed(t *testing.T) {
	setNATSEnv(t)
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy", "nats", "nats-*.conf"))
	for _, f := range files {
		m, err := natsconf.ParseFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		checkNATSSecurity(t, f, m)
	}
	for _, o := range k8sObjects(t) {
		if o.Kind != "ConfigMap" || o.Data["nats.conf"] == "" {
			continue
		}
		dir := t.TempDir()
		for name, content := range o.Data {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		m, err := natsconf.ParseFile(filepath.Join(dir, "nats.conf"))
		if err != nil {
			t.Fatalf("ConfigMap/%s: %v", o.Metadata.Name, err)
		}
		checkNATSSecurity(t, "ConfigMap/"+o.Metadata.Name, m)
	}
}

// k8sSecured is the part of a workload the security checks read.
type k8sSecured struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Image        string   `yaml:"image"`
					Args         []string `yaml:"args"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func k8sObjects(t *testing.T) []k8sSecured {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "*.yaml"))
	var objs []k8sSecured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o k8sSecured
			if err := dec.Decode(&o); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

// TestKubernetesServicesHaveTheirNATSIdentity: every orgsync workload
// connects over TLS with the seed of its own role, from a Secret that the
// manifests define, next to the NATS users' keys and the JetStream key.
func TestKubernetesServicesHaveTheirNATSIdentity(t *testing.T) {
	objs := k8sObjects(t)
	defined := map[string]bool{}
	for _, o := range objs {
		defined[o.Kind+"/"+o.Metadata.Name] = true
	}
	for _, want := range []string{"Secret/nats-tls", "Secret/nats-jetstream", "ConfigMap/orgsync-nats-users"} {
		if !defined[want] {
			t.Errorf("deploy/k8s defines no %s", want)
		}
	}
	seen := map[string]bool{}
	for _, o := range objs {
		for _, c := range o.Spec.Template.Spec.Containers {
			m := regexp.MustCompile(`orgsync/([a-z]+):`).FindStringSubmatch(c.Image)
			if m == nil {
				continue
			}
			role, where := m[1], o.Kind+"/"+o.Metadata.Name
			seen[role] = true
			if u := natsURLArg(c.Args); !strings.HasPrefix(u, "tls://") {
				t.Errorf("%s: --nats %q is not tls://", where, u)
			}
			creds, ca := argValue(c.Args, "creds"), argValue(c.Args, "tls-ca")
			secret := ""
			for _, vm := range c.VolumeMounts {
				if filepath.Dir(creds) == vm.MountPath {
					for _, v := range o.Spec.Template.Spec.Volumes {
						if v.Name == vm.Name && v.Secret != nil {
							secret = v.Secret.SecretName
						}
					}
				}
			}
			if secret != "orgsync-nats-"+role || !defined["Secret/"+secret] {
				t.Errorf("%s: --creds %q is not mounted from its own Secret orgsync-nats-%s (got %q)", where, creds, role, secret)
			}
			if ca == "" {
				t.Errorf("%s: no --tls-ca", where)
			}
		}
	}
	for _, role := range natsx.Roles() {
		if role != natsx.RoleCLI && !seen[role] {
			t.Errorf("no workload runs as NATS user %s", role)
		}
		if !defined["Secret/orgsync-nats-"+role] {
			t.Errorf("deploy/k8s defines no Secret orgsync-nats-%s", role)
		}
	}
}

// TestComposeServicesHaveTheirNATSIdentity: every compose service and the
// CLI get their own seed as a compose secret, the CA, and tls:// URLs;
// NATS nodes mount the authorization and TLS files and publish on loopback.
func TestComposeServicesHaveTheirNATSIdentity(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image string `yaml:"image"`
			Build *struct {
				Target string `yaml:"target"`
			} `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			EnvFile     []string          `yaml:"env_file"`
			Volumes     []string          `yaml:"volumes"`
			Ports       []string          `yaml:"ports"`
			Secrets     []struct {
				Source string `yaml:"source"`
				Target string `yaml:"target"`
			} `yaml:"secrets"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			vols := strings.Join(s.Volumes, " ")
			if !strings.Contains(vols, "authorization.conf:/etc/nats/authorization.conf") || !strings.Contains(vols, ":/etc/nats/tls") || len(s.EnvFile) == 0 {
				t.Errorf("compose %s: NATS node without authorization.conf, TLS files or its env file", name)
			}
			for _, p := range s.Ports {
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("compose %s: port %s published on every interface", name, p)
				}
			}
			continue
		}
		if s.Build == nil || s.Build.Target == "gcsim" {
			continue
		}
		role := s.Build.Target
		if role == "orgsync" {
			role = natsx.RoleCLI
		}
		own := ""
		for _, sec := range s.Secrets {
			if "/run/secrets/"+sec.Target == s.Environment[natsx.EnvCreds] {
				own = sec.Source
			}
		}
		if own != "nats-"+role || c.Secrets[own].File != "./deploy/secrets/"+role+".nk" {
			t.Errorf("compose %s: %s does not point at its own seed (secret %q, file %q)", name, natsx.EnvCreds, own, c.Secrets[own].File)
		}
		if s.Environment[natsx.EnvTLSCA] == "" {
			t.Errorf("compose %s: no %s", name, natsx.EnvTLSCA)
		}
		url := natsURLArg(s.Command)
		if url == "" {
			url = s.Environment["ORGSYNC_NATS_URL"]
		}
		if !strings.HasPrefix(url, "tls://") {
			t.Errorf("compose %s: NATS URL %q is not tls://", name, url)
		}
	}
}
