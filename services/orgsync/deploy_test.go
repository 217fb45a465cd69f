package orgsync

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	natsconf "github.com/nats-io/nats-server/v2/conf"
	"gopkg.in/yaml.v3"

	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/auth"
	"github.com/orgsync/orgsync/services/extractor"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/integrator"
	"github.com/orgsync/orgsync/services/provisioner"
	"github.com/orgsync/orgsync/services/reconciler"
	"github.com/orgsync/orgsync/services/resolver"
)

// The deployment files cannot run here (no Docker engine, no cluster), so
// these tests check what would break a deploy: every file parses, every
// orgsync service has an image, ports, a health check or probes and the NATS
// URL, and every binary and --flag a manifest names exists in the code.

// repoRoot is the repository root, from services/orgsync.
const repoRoot = "../.."

// serviceCommands are the service binaries built on pkg/service, by name.
// A service whose Command does not exist yet is listed with nil: its flags
// are then skipped with a message naming it.
var serviceCommands = map[string]func() service.Command{
	"auth":        auth.Command,
	"extractor":   extractor.Command,
	"resolver":    resolver.Command,
	"provisioner": provisioner.Command,
	"reconciler":  reconciler.Command,
	"integrator":  integrator.Command,
}

// flagNames returns the flags binary name accepts.
func flagNames(t *testing.T, name string) (map[string]bool, bool) {
	t.Helper()
	names := map[string]bool{}
	switch {
	case name == "gcsim": // its own CLI (not pkg/service): read --help
		var out bytes.Buffer
		if err := gcsim.Main(context.Background(), []string{"-h"}, &out); err != nil {
			t.Fatalf("gcsim --help: %v", err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1) {
			names[m[1]] = true
		}
	case serviceCommands[name] != nil:
		fs, _, _ := service.FlagSet(serviceCommands[name](), io.Discard)
		fs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	default:
		return nil, false
	}
	return names, true
}

// checkCommand asserts binary name exists as services/<name>/cmd/<name> and
// accepts every flag in args.
func checkCommand(t *testing.T, where, name string, args []string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(repoRoot, "services", name, "cmd", name, "main.go")); err != nil {
		t.Errorf("%s runs %q but services/%s/cmd/%s/main.go does not exist", where, name, name, name)
		return
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "-") }) {
		return // no flags to check (e.g. the CLI service, run with a subcommand)
	}
	known, ok := flagNames(t, name)
	if !ok {
		t.Logf("SKIP flags of %s: services/%s has no Command() yet", where, name)
		return
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		flagName, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !known[flagName] {
			t.Errorf("%s passes %s, which %s does not accept", where, a, name)
		}
	}
}

// natsURLArg returns the value of --nats in args.
func natsURLArg(args []string) string {
	for i, a := range args {
		if a == "--nats" && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--nats="); ok {
			return v
		}
	}
	return ""
}

// argValue returns the value of --name in args.
func argValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
			Target     string `yaml:"target"`
		} `yaml:"build"`
		Command     []string          `yaml:"command"`
		Ports       []string          `yaml:"ports"`
		Profiles    []string          `yaml:"profiles"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

func TestDockerCompose(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var natsNodes, provisioners []string
	owners := map[string][]string{} // org → provisioners owning it
	seen := map[string]bool{}
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			natsNodes = append(natsNodes, name)
			if len(s.Ports) == 0 || s.Healthcheck == nil {
				t.Errorf("compose %s: NATS node without ports or health check", name)
			}
			continue
		}
		if s.Build == nil {
			continue // Jaeger, Prometheus
		}
		binary := s.Build.Target
		where := "compose service " + name
		seen[binary] = true
		if s.Build.Dockerfile != "deploy/Dockerfile" || !regexp.MustCompile(`(?m)^FROM \S+ AS `+regexp.QuoteMeta(binary)+`$`).Match(dockerfile) {
			t.Errorf("%s: build target %q is not a stage of deploy/Dockerfile", where, binary)
		}
		if s.Image == "" {
			t.Errorf("%s: no image name", where)
		}
		checkCommand(t, where, binary, s.Command)
		if slices.Contains(s.Profiles, "cli") {
			continue // the CLI: run on demand, no server
		}
		if len(s.Ports) == 0 {
			t.Errorf("%s: no ports", where)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s: no health check", where)
		}
		if binary == "gcsim" {
			continue // no NATS
		}
		if hc := strings.Join(s.Healthcheck.Test, " "); !strings.Contains(hc, "/healthz") || !strings.Contains(hc, "/busybox/wget") {
			t.Errorf("%s: health check %q does not GET /healthz with the image's busybox wget", where, hc)
		}
		url := natsURLArg(s.Command)
		for _, node := range []string{"nats-1:4222", "nats-2:4222", "nats-3:4222"} {
			if !strings.Contains(url, node) {
				t.Errorf("%s: --nats %q lacks %s (clients must know every node)", where, url, node)
			}
		}
		if argValue(s.Command, "replicas") != "3" {
			t.Errorf("%s: --replicas %q, want 3 on the 3-node cluster", where, argValue(s.Command, "replicas"))
		}
		if binary == "provisioner" {
			provisioners = append(provisioners, name)
			for _, org := range strings.Split(argValue(s.Command, "own"), ",") {
				owners[org] = append(owners[org], name)
			}
			if st := argValue(s.Command, "state"); !strings.HasPrefix(st, "/data/") || !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }) {
				t.Errorf("%s: --state %q is not on a volume mounted at /data", where, st)
			}
		}
	}
	for _, want := range []string{"auth", "extractor", "resolver", "provisioner", "integrator", "reconciler", "gcsim", "orgsync"} {
		if !seen[want] {
			t.Errorf("docker-compose.yml has no %s service", want)
		}
	}
	if len(natsNodes) != 3 {
		t.Errorf("NATS nodes = %v, want 3", natsNodes)
	}
	if len(provisioners) < 2 {
		t.Errorf("provisioners = %v, want two with different --own sets", provisioners)
	}
	standby := false
	for _, o := range owners {
		standby = standby || len(o) > 1
	}
	if !standby {
		t.Errorf("no org is owned by two provisioners (hot standby): %v", owners)
	}
	if _, ok := c.Services["jaeger"]; !ok {
		t.Error("no trace collector (jaeger) in docker-compose.yml")
	}

	// The mounted org registry loads, and names every org --own names.
	cfg, err := orgconfig.Load(filepath.Join(repoRoot, "deploy", "orgs.example.yaml"))
	if err != nil {
		t.Fatalf("deploy/orgs.example.yaml: %v", err)
	}
	for org := range owners {
		if !slices.Contains(cfg.Keys(), org) {
			t.Errorf("--own names %q, which deploy/orgs.example.yaml does not list (%v)", org, cfg.Keys())
		}
	}
	crm, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "crm.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	checkCRMFile(t, "deploy/crm.example.yaml", crm, cfg.Keys())
}

// checkCRMFile asserts the integrator loads the CRM adapters file data
// (mode as deployed: 0644, so no API key in it) with the keys from the
// environment, into a valid config for orgs the registry lists.
func checkCRMFile(t *testing.T, where string, data []byte, orgKeys []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crm.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	targets, err := integrator.LoadCRMFileEnv(path, func(k string) string {
		if strings.HasPrefix(k, "ORGSYNC_CRM_") {
			return "key-from-env"
		}
		return ""
	})
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if len(targets) == 0 {
		t.Errorf("%s: no CRM adapters", where)
	}
	for k := range targets {
		if !slices.Contains(orgKeys, k) {
			t.Errorf("%s: CRM adapter for %q, which the org registry does not list (%v)", where, k, orgKeys)
		}
	}
	if err := (integrator.Config{Targets: targets}).Validate(); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

func TestNATSClusterConfigs(t *testing.T) {
	setNATSEnv(t) // the configs read the users' keys and the JetStream key from it
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy", "nats", "nats-*.conf"))
	if len(files) != 3 {
		t.Fatalf("deploy/nats: %d config files, want 3", len(files))
	}
	names := map[string]bool{}
	for _, f := range files {
		m, err := natsconf.ParseFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		checkNATSConf(t, f, m)
		names[fmt.Sprint(m["server_name"])] = true
	}
	if len(names) != 3 {
		t.Errorf("server names %v are not unique", names)
	}
}

func checkNATSConf(t *testing.T, where string, m map[string]any) {
	t.Helper()
	js, _ := m["jetstream"].(map[string]any)
	cluster, _ := m["cluster"].(map[string]any)
	routes, _ := cluster["routes"].([]any)
	switch {
	case js == nil || js["store_dir"] == nil:
		t.Errorf("%s: no jetstream store_dir", where)
	case len(routes) != 3:
		t.Errorf("%s: %d cluster routes, want 3", where, len(routes))
	case !strings.HasSuffix(fmt.Sprint(m["http"]), ":8222"):
		t.Errorf("%s: monitoring not on port 8222 (http: %v)", where, m["http"])
	}
}

// k8sObject is the part of a Kubernetes object the checks read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name           string    `yaml:"name"`
	Image          string    `yaml:"image"`
	Args           []string  `yaml:"args"`
	Ports          []any     `yaml:"ports"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no deploy/k8s/*.yaml")
	}
	var objs []k8sObject
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var o k8sObject
			if err := dec.Decode(&o); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if o.Kind == "" {
				t.Errorf("%s document %d has no kind", f, i)
				continue
			}
			objs = append(objs, o)
		}
	}

	workloads := map[string]bool{}
	var orgKeys []string
	groupOwn := map[string]string{} // provisioner StatefulSet → --own
	for _, o := range objs {
		where := o.Kind + "/" + o.Metadata.Name
		switch {
		case o.Kind == "ConfigMap" && o.Data["nats.conf"] != "":
			setNATSEnv(t)      // the server's name, users' keys and JetStream key
			dir := t.TempDir() // nats.conf includes authorization.conf
			for name, content := range o.Data {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := natsconf.ParseFile(filepath.Join(dir, "nats.conf"))
			if err != nil {
				t.Fatalf("%s nats.conf: %v", where, err)
			}
			checkNATSConf(t, where, m)
		case o.Kind == "ConfigMap" && o.Data["orgs.yaml"] != "":
			path := filepath.Join(t.TempDir(), "orgs.yaml")
			if err := os.WriteFile(path, []byte(o.Data["orgs.yaml"]), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := orgconfig.Load(path)
			if err != nil {
				t.Fatalf("%s orgs.yaml: %v", where, err)
			}
			orgKeys = cfg.Keys()
		case o.Kind == "ConfigMap" && o.Data["crm.yaml"] != "":
			checkCRMFile(t, where+" crm.yaml", []byte(o.Data["crm.yaml"]), orgKeys)
		case o.Kind == "Deployment" || o.Kind == "StatefulSet":
			for _, c := range o.Spec.Template.Spec.Containers {
				binary := strings.TrimSuffix(filepath.Base(c.Image), ":latest")
				if i := strings.IndexByte(binary, ':'); i >= 0 {
					binary = binary[:i]
				}
				if binary == "nats" {
					if o.Spec.Replicas == nil || *o.Spec.Replicas != 3 || len(o.Spec.VolumeClaimTemplates) == 0 {
						t.Errorf("%s: NATS needs 3 replicas with persistent volumes", where)
					}
					workloads["nats"] = true
					continue
				}
				workloads[binary] = true
				checkCommand(t, where, binary, c.Args)
				if len(c.Ports) == 0 {
					t.Errorf("%s: container %s has no ports", where, c.Name)
				}
				if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
					t.Errorf("%s: liveness probe is not GET /healthz", where)
				}
				if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
					t.Errorf("%s: readiness probe is not GET /readyz", where)
				}
				if natsURLArg(c.Args) == "" || argValue(c.Args, "replicas") != "3" {
					t.Errorf("%s: needs --nats and --replicas 3", where)
				}
				if a := o.Spec.Template.Metadata.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" {
					t.Errorf("%s: no Prometheus scrape annotations", where)
				}
				if binary != "provisioner" {
					continue
				}
				if o.Kind != "StatefulSet" || o.Spec.Replicas == nil || *o.Spec.Replicas != 2 || len(o.Spec.VolumeClaimTemplates) == 0 {
					t.Errorf("%s: a provisioner group is a StatefulSet of 2 replicas (active/standby) with a volume claim for its bbolt file", where)
				}
				groupOwn[o.Metadata.Name] = argValue(c.Args, "own")
				state := argValue(c.Args, "state")
				onClaim := false
				for _, vm := range c.VolumeMounts {
					for _, vct := range o.Spec.VolumeClaimTemplates {
						onClaim = onClaim || (vm.Name == vct.Metadata.Name && strings.HasPrefix(state, vm.MountPath+"/"))
					}
				}
				if !onClaim {
					t.Errorf("%s: --state %q is not on the volume claim", where, state)
				}
			}
		}
	}
	for _, want := range []string{"nats", "auth", "extractor", "resolver", "reconciler", "provisioner", "integrator"} {
		if !workloads[want] {
			t.Errorf("deploy/k8s has no workload for %s", want)
		}
	}
	// Org groups: every org owned by exactly one group, all of them known.
	owner := map[string]string{}
	for group, own := range groupOwn {
		if own == "" || own == "all" {
			t.Errorf("provisioner group %s: --own %q; a group names its orgs", group, own)
			continue
		}
		for _, org := range strings.Split(own, ",") {
			if prev, dup := owner[org]; dup {
				t.Errorf("org %s is owned by groups %s and %s (use the 2 replicas of one group for standby)", org, prev, group)
			}
			owner[org] = group
			if !slices.Contains(orgKeys, org) {
				t.Errorf("provisioner group %s owns %q, which the orgs ConfigMap does not list (%v)", group, org, orgKeys)
			}
		}
	}
	if len(groupOwn) < 2 {
		var names []string
		for g := range groupOwn {
			names = append(names, g)
		}
		sort.Strings(names)
		t.Errorf("provisioner groups = %v, want at least two to show the spread", names)
	}
}
