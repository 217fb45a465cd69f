package failover_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/orgsync"
)

const sourceOrg = "source"

// targetKey is the org key of target i (1-based).
func targetKey(i int) string { return fmt.Sprintf("target%d", i) }

// agentEmail is the email of source agent i (0-based).
func agentEmail(i int) string { return fmt.Sprintf("agent%03d@acme.example", i) }

// buildFixture is the demo fixture with agents source users configured like
// Jane Doe (no manager: plans of different rounds stay independent) and
// targets target orgs, each a copy of the demo's empty "Acme Target 3" with
// its own id, client, CRM key and a DID pool of 100 numbers.
func buildFixture(t *testing.T, agents, targets int) *gcsim.Fixture {
	t.Helper()
	if agents > 100 || targets > 9 {
		t.Fatalf("fixture: at most 100 agents and 9 targets")
	}
	raw, err := json.Marshal(gcsim.DemoFixture())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Orgs []map[string]any `json:"orgs"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var src, template map[string]any
	for _, o := range doc.Orgs {
		switch o["name"] {
		case "Acme Source":
			src = o
		case "Acme Target 3":
			template = o
		}
	}
	if src == nil || template == nil {
		t.Fatal("demo fixture lacks Acme Source or Acme Target 3")
	}
	var jane map[string]any
	for _, u := range src["users"].([]any) {
		if u.(map[string]any)["email"] == "jane.doe@acme.example" {
			jane = u.(map[string]any)
		}
	}
	for i := 0; i < agents; i++ {
		agent := deepCopy(t, jane)
		delete(agent, "id")
		delete(agent, "manager")
		agent["name"] = fmt.Sprintf("Agent %03d", i)
		agent["email"] = agentEmail(i)
		agent["addresses"] = []any{map[string]any{"address": fmt.Sprintf("+131755502%02d", i), "mediaType": "PHONE", "type": "WORK"}}
		src["users"] = append(src["users"].([]any), agent)
	}
	src["didPools"] = append(src["didPools"].([]any), map[string]any{"name": "Agent DIDs", "startPhoneNumber": "+13175550200", "endPhoneNumber": "+13175550299"})

	orgs := []map[string]any{src}
	for i := 1; i <= targets; i++ {
		o := deepCopy(t, template)
		o["id"] = fmt.Sprintf("5f0c2a4e-0000-4000-8000-0000000006%02d", i)
		o["name"] = fmt.Sprintf("Failover Target %d", i)
		o["clients"] = []any{map[string]any{"clientId": targetKey(i) + "-client", "clientSecret": targetKey(i) + "-secret"}}
		o["crmApiKey"] = targetKey(i) + "-crm-key"
		o["didPools"] = []any{map[string]any{"name": fmt.Sprintf("Target %d DIDs", i),
			"startPhoneNumber": fmt.Sprintf("+1317555%d000", i), "endPhoneNumber": fmt.Sprintf("+1317555%d099", i)}}
		orgs = append(orgs, o)
	}
	doc.Orgs = orgs
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	fx, err := gcsim.ParseFixture(b)
	if err != nil {
		t.Fatalf("fixture with %d agents, %d targets: %v", agents, targets, err)
	}
	return fx
}

func deepCopy(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// system is orgsync as separate OS processes (auth, extractor, resolver,
// provisioners) on a NATS server or cluster, against gcsim in this process.
type system struct {
	t        *testing.T
	dir      string
	sim      *gcsim.Sim
	orgIDs   map[string]string // org key → gcsim org id
	natsURLs string            // comma-separated client URLs
	replicas int
	// orgsFile has no credentials (every service but auth); authOrgsFile has them.
	orgsFile, authOrgsFile string

	nc     *nats.Conn
	js     jetstream.JetStream
	client *orgsync.Client
}

// simConfig is gcsim for the failure tests: no rate limit (API calls are
// counted exactly), short eventual-consistency windows, and latency per
// request so a plan takes long enough to be killed in the middle.
func simConfig(latency time.Duration) gcsim.Config {
	return gcsim.Config{RateLimitPerMinute: -1, NotFoundAfterCreate: 50 * time.Millisecond, ActivationDelay: 100 * time.Millisecond, Latency: latency}
}

// newSystem starts gcsim with fx and writes the org files; NATS must be
// running at natsURLs. Services are started with startService.
func newSystem(t *testing.T, fx *gcsim.Fixture, simCfg gcsim.Config, natsURLs string, replicas int) *system {
	t.Helper()
	s := &system{t: t, dir: t.TempDir(), orgIDs: map[string]string{}, natsURLs: natsURLs, replicas: replicas}
	sim, err := gcsim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(fx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, ln) }()
	t.Cleanup(func() { stop(); <-done; sim.Close() })
	s.sim = sim
	simURL := "http://" + ln.Addr().String()

	withSecrets, without := map[string]orgconfig.Org{}, map[string]orgconfig.Org{}
	for _, o := range fx.Orgs {
		key := orgsync.OrgKeyOf(o.Clients[0].ClientID)
		s.orgIDs[key] = o.ID
		entry := orgconfig.Org{APIBaseURL: simURL, LoginBaseURL: simURL, RateLimit: 50, Burst: 50}
		without[key] = entry
		entry.ClientID, entry.ClientSecret = o.Clients[0].ClientID, o.Clients[0].ClientSecret
		withSecrets[key] = entry
	}
	s.orgsFile = s.writeOrgs("orgs.yaml", without)
	s.authOrgsFile = s.writeOrgs("orgs-auth.yaml", withSecrets)

	nc, err := nats.Connect(natsURLs, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s.nc, s.js, s.client = nc, js, &orgsync.Client{JS: js}
	return s
}

func (s *system) writeOrgs(name string, entries map[string]orgconfig.Org) string {
	s.t.Helper()
	b, err := yaml.Marshal(map[string]any{"orgs": entries})
	if err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// startService starts a service binary as a process with the shared flags
// (instance names the process and its log) and waits until it is ready.
func (s *system) startService(service, instance string, extra ...string) *proc {
	s.t.Helper()
	orgsFile := s.orgsFile
	if service == "auth" {
		orgsFile = s.authOrgsFile
	}
	httpAddr := freeAddr(s.t)
	args := append([]string{"--nats", s.natsURLs, "--orgs", orgsFile, "--http", httpAddr,
		"--replicas", fmt.Sprint(s.replicas), "--log-level", "info"}, extra...)
	p := startProc(s.t, instance, bin(service), httpAddr, s.dir, args...)
	p.waitReady(60 * time.Second)
	return p
}

// startPipeline starts auth, extractor and resolver (one process each).
func (s *system) startPipeline() map[string]*proc {
	out := map[string]*proc{}
	for _, name := range []string{"auth", "extractor", "resolver"} {
		out[name] = s.startService(name, name)
	}
	return out
}

// submit publishes a clone request of users into targets.
func (s *system) submit(name string, users, targets []string) *orgsync.Submitted {
	s.t.Helper()
	req, err := orgsync.CloneSpec{SourceOrg: sourceOrg, Users: users, Targets: targets, RequestedBy: name}.Build()
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := s.client.Submit(ctx, req)
	if err != nil {
		s.t.Fatal(err)
	}
	return sub
}

// wait waits for the complete report of sub and requires that every target
// succeeded for every user.
func (s *system) wait(sub *orgsync.Submitted, timeout time.Duration) *orgsync.Report {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rep, err := s.client.Wait(ctx, sub, nil)
	if err != nil {
		s.t.Fatalf("request %s lost: no complete report after %v: %v\n%s", sub.Request.GetRequestId(), timeout, err, reportJSON(rep))
	}
	if rep.Status != orgsync.ReportSucceeded {
		s.t.Fatalf("request %s: %s (%s)\n%s", rep.RequestID, rep.Status, rep.Reason, reportJSON(rep))
	}
	for _, tr := range rep.Targets {
		if tr.Done != tr.Total || tr.Total != len(sub.Request.GetUsers()) {
			s.t.Fatalf("request %s, %s: %d of %d users done, want %d\n%s", rep.RequestID, tr.Org, tr.Done, tr.Total, len(sub.Request.GetUsers()), reportJSON(rep))
		}
	}
	return rep
}

func reportJSON(r *orgsync.Report) string {
	if r == nil {
		return "<nil>"
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if len(b) > 4000 {
		b = append(b[:4000], "..."...)
	}
	return string(b)
}

// calls is the number of API requests gcsim answered for org key.
func (s *system) calls(key string) int { return s.sim.Stats(s.orgIDs[key]).TotalRequests() }

// writes is the number of write requests gcsim answered for org key.
func (s *system) writes(key string) int { return orgsync.SimWrites(s.sim.Stats(s.orgIDs[key])) }

// assertCloned checks, in every target, that each user exists exactly once
// with the source user's configuration, and that no shared resource (skill,
// language, team) exists twice.
func (s *system) assertCloned(targets, users []string) {
	s.t.Helper()
	srcID := s.orgIDs[sourceOrg]
	srcState, _ := s.sim.OrgState(srcID)
	for _, target := range targets {
		id := s.orgIDs[target]
		for _, email := range users {
			if n := s.sim.CountUsersByEmail(id, email); n != 1 {
				s.t.Errorf("%s: %d users with email %s, want 1", target, n, email)
				continue
			}
			want, _ := s.sim.UserByEmail(srcID, email)
			got, _ := s.sim.UserByEmail(id, email)
			if d := userDiff(want, got); d != "" {
				s.t.Errorf("%s: user %s differs from the source: %s", target, email, d)
			}
		}
		for _, name := range srcState.Skills {
			if n := s.sim.CountSkillsByName(id, name); n > 1 {
				s.t.Errorf("%s: skill %q exists %d times", target, name, n)
			}
		}
		for _, name := range srcState.Languages {
			if n := s.sim.CountLanguagesByName(id, name); n > 1 {
				s.t.Errorf("%s: language %q exists %d times", target, name, n)
			}
		}
		for _, name := range srcState.Teams {
			if n := s.sim.CountTeamsByName(id, name); n > 1 {
				s.t.Errorf("%s: team %q exists %d times", target, name, n)
			}
		}
	}
}

// teamMembers counts the users of org key in each team (gcsim keeps a user
// in at most one team, so a member counted twice cannot hide).
func (s *system) teamMembers(key string) map[string]int {
	st, _ := s.sim.OrgState(s.orgIDs[key])
	out := map[string]int{}
	for _, u := range st.Users {
		if u.Team != "" {
			out[u.Team]++
		}
	}
	return out
}

// userDiff compares what orgsync clones of a user (ids, versions, the phone
// number, which comes from the target's pool, and external ids differ).
func userDiff(want, got gcsim.UserState) string {
	type cloned struct {
		Name, Title, Department, Division, State string
		Licenses                                 []string
		Skills, Languages                        map[string]float64
		Utilization                              any
		Team                                     string
		Queues                                   []string
		Grants                                   []gcsim.FixtureGrant
		Phones                                   int
	}
	of := func(u gcsim.UserState) string {
		b, _ := json.Marshal(cloned{u.Name, u.Title, u.Department, u.Division, "active", u.Licenses, u.Skills, u.Languages,
			u.Utilization, u.Team, u.Queues, u.Grants, len(u.Addresses)})
		return string(b)
	}
	if got.State != "active" {
		return "state " + got.State
	}
	if w, g := of(want), of(got); w != g {
		return fmt.Sprintf("\n  source %s\n  target %s", w, g)
	}
	return ""
}

// natsServer is an embedded single nats-server (JetStream) for the tests
// whose subject is not NATS itself.
func natsServer(t *testing.T) string {
	t.Helper()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: filepath.Join(t.TempDir(), "js")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

// consumerDrained reports whether durable on PLANS has nothing left to
// deliver and nothing waiting for an ack (every plan published so far was
// handled).
func (s *system) consumerDrained(ctx context.Context, durable string) (bool, error) {
	cons, err := s.js.Consumer(ctx, natsx.StreamPlans, durable)
	if err != nil {
		return false, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return false, err
	}
	return ci.NumPending == 0 && ci.NumAckPending == 0, nil
}
