package clienttest_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/services/gcsim"
)

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	acme, globex := e.client(t, acme), e.client(t, globex)
	ctx := ctxT(t)

	a, err := acme.GetOrganization(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g, err := globex.GetOrganization(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == g.ID || a.Name != "Acme" || g.Name != "Globex" {
		t.Fatalf("orgs: acme=%+v globex=%+v", a, g)
	}
	gus, found, err := globex.FindUserByEmail(ctx, "gus@globex.example")
	if err != nil || !found {
		t.Fatalf("globex user: %v %v", found, err)
	}
	// Acme's token cannot see Globex's user, by id or by email.
	if _, err := acme.GetUser(ctx, gus.ID); !genesys.IsNotFound(err) {
		t.Fatalf("acme read globex's user: %v", err)
	}
	if _, found, err := acme.FindUserByEmail(ctx, "gus@globex.example"); err != nil || found {
		t.Fatalf("acme search found globex's user: %v %v", found, err)
	}
}

func TestBadCredentialsGiveClearErrorWithoutSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	ctx := ctxT(t)
	for name, cfg := range map[string]genesys.OrgConfig{
		"wrong secret": {OrgID: acme, ClientID: "acme-client", ClientSecret: "not-the-secret-42"},
		"unknown org":  {OrgID: "initech", ClientID: "initech-client", ClientSecret: "not-the-secret-42"},
	} {
		cfg.APIBaseURL, cfg.LoginBaseURL = e.url, e.url
		seen := &calls{}
		c := e.clientWith(t, cfg, genesys.WithObserver(seen.observe))
		_, err := c.GetOrganization(ctx)
		if err == nil {
			t.Fatalf("%s: call succeeded", name)
		}
		if !genesys.IsUnauthorized(err) {
			t.Errorf("%s: IsUnauthorized(%v) = false", name, err)
		}
		msg := err.Error()
		if strings.Contains(msg, "not-the-secret-42") {
			t.Fatalf("%s: error leaks the secret: %s", name, msg)
		}
		for _, want := range []string{cfg.OrgID, "/oauth/token", "401"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not mention %q", name, msg, want)
			}
		}
		// Rejected credentials are not retried.
		if n := c.TokenFetches(); n != 0 {
			t.Errorf("%s: %d tokens fetched", name, n)
		}
		if n := seen.count(func(genesys.Call) bool { return true }); n != 1 {
			t.Errorf("%s: %d attempts, want 1 (no retry on bad credentials)", name, n)
		}
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{TokenTTL: 2 * time.Second})
	seen := &calls{}
	c := e.client(t, acme, genesys.WithObserver(seen.observe))
	ctx := ctxT(t)
	deadline := time.Now().Add(5 * time.Second)
	for c.TokenFetches() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("token not refreshed within 5s of a 2s token (fetches=%d)", c.TokenFetches())
		}
		if _, err := c.GetOrganization(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // pacing of a polling loop, not synchronisation
	}
	if n := seen.count(withStatus(http.StatusUnauthorized)); n != 0 {
		t.Fatalf("%d calls hit 401: the token was used until it expired", n)
	}
}

func TestRateLimitHonoursRetryAfterWithoutStorm(t *testing.T) {
	t.Parallel()
	// The client's one call opens the token's window; another user of the
	// same token spends the rest of it, so the client's next calls meet a
	// 429 it could not see coming (the inin-ratelimit-* headers of its own
	// answer showed budget left). Its 20 calls then fit the next window.
	const budget, workers, perWorker = 20, 4, 5
	e := newEnv(t, gcsim.Config{RateLimitPerMinute: budget})
	var (
		mu      sync.Mutex
		minRate = math.Inf(1)
		lim     = genesys.NewLimiter(1000, 1000, 1)
	)
	ctx := ctxT(t)
	cfg := e.config(acme)
	cc := clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: e.url + "/oauth/token"}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The rate recovers additively on success, so sample it on every call to
	// see the dip the 429 caused.
	c := e.client(t, acme, genesys.WithLimiter(lim), genesys.WithTokenSource(oauth2.StaticTokenSource(tok)), genesys.WithObserver(func(context.Context, genesys.Call) {
		mu.Lock()
		minRate = min(minRate, lim.Stats().Rate)
		mu.Unlock()
	}))
	if _, err := c.GetOrganization(ctx); err != nil { // opens the token's one-minute window
		t.Fatal(err)
	}
	other := oauth2.NewClient(ctx, oauth2.StaticTokenSource(tok))
	for range budget - 1 {
		resp, err := other.Get(e.url + "/api/v2/organizations/me")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET organizations/me with the shared token: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	e.advance(59 * time.Second) // the window now resets one second from here: Retry-After 1
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for range workers {
		wg.Go(func() {
			for range perWorker {
				if _, err := c.GetOrganization(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	throttled := e.sim.Stats(acme).RateLimited
	st := c.Limiter().Stats()
	t.Logf("429s=%d limiter=%+v elapsed=%s", throttled, st, time.Since(start))
	if throttled == 0 {
		t.Fatal("the simulator never throttled: the test did not exercise 429")
	}
	if throttled > workers {
		t.Fatalf("%d 429s for %d concurrent callers: callers kept hammering after the first 429", throttled, workers)
	}
	mu.Lock()
	dip := minRate
	mu.Unlock()
	if int64(throttled) != st.Throttled || dip >= st.MaxRate {
		t.Fatalf("limiter did not adapt: lowest rate %g, stats %+v", dip, st)
	}
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("finished in %s, before the 1s Retry-After", time.Since(start))
	}
}

func TestRetriesUnderFaultsNeverDuplicateCreates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	c := e.client(t, acme)
	ctx := ctxT(t)
	home, err := c.GetHomeDivision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetFaults(acme, gcsim.Faults{ErrorRate: 0.15, ResetRate: 0.25}); err != nil {
		t.Fatal(err)
	}
	const n = 12
	for i := range n {
		if _, err := c.CreateSkill(ctx, fmt.Sprintf("Fault Skill %02d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateTeam(ctx, fmt.Sprintf("Fault Team %02d", i), "", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateUser(ctx, genesys.CreateUser{Name: fmt.Sprintf("Fault User %02d", i),
			Email: fmt.Sprintf("fault%02d@acme.example", i), DivisionID: home.ID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.sim.SetFaults(acme, gcsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	st := e.sim.Stats(acme)
	t.Logf("status counts under faults: %v; creates: %v", st.Status, st.Creates)
	if st.Status[0] == 0 || st.Status[503] == 0 {
		t.Fatalf("faults not exercised: %v", st.Status)
	}
	for kind, want := range map[string]int{"skill": n, "team": n, "user": n} {
		if got := st.Creates[kind]; got != want {
			t.Errorf("%d %ss created for %d requested: duplicates or losses", got, kind, want)
		}
	}
	skills, err := c.ListSkills(ctx, "Fault Skill")
	if err != nil {
		t.Fatal(err)
	}
	teams, err := c.ListTeams(ctx, "Fault Team")
	if err != nil {
		t.Fatal(err)
	}
	if len(skills) != n || len(teams) != n {
		t.Fatalf("listed %d skills and %d teams, want %d each", len(skills), len(teams), n)
	}
}

func TestPatchUserRetriesVersionConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	ctx := ctxT(t)
	other := e.client(t, acme)
	ann, found, err := other.FindUserByEmail(ctx, "ann@acme.example")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	// Between this client's read and its PATCH, another writer changes the
	// user: the PATCH carries a stale version and must be retried.
	seen := &calls{}
	var once sync.Once
	c := e.client(t, acme, genesys.WithObserver(func(cctx context.Context, call genesys.Call) {
		seen.observe(cctx, call)
		if call.Operation == "GET /api/v2/users/{userId}" && call.Status == 200 {
			once.Do(func() {
				if _, err := other.PatchUser(cctx, ann.ID, genesys.UserPatch{Department: ptr("Interloper")}); err != nil {
					t.Error(err)
				}
			})
		}
	}))
	u, err := c.PatchUser(ctx, ann.ID, genesys.UserPatch{Title: ptr("Head of Support"), Addresses: &[]genesys.Contact{{Address: "+13175550101", MediaType: "PHONE", Type: "WORK"}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := seen.count(withStatus(http.StatusConflict)); n != 1 {
		t.Fatalf("%d conflicts seen, want exactly 1", n)
	}
	got, err := c.GetUser(ctx, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u.Title != "Head of Support" || got.Title != "Head of Support" || got.Department != "Interloper" {
		t.Fatalf("user after patch: %+v", got)
	}
	if len(got.Addresses) != 1 || got.Addresses[0].Address != "+13175550101" || got.Addresses[0].Type != "WORK" {
		t.Fatalf("addresses: %+v", got.Addresses)
	}
	if got.Version != ann.Version+2 {
		t.Fatalf("version %d, want %d (two writes)", got.Version, ann.Version+2)
	}
}

func ptr[T any](v T) *T { return &v }

func TestReadAfterCreateWaitsOutEventualConsistency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{NotFoundAfterCreate: 300 * time.Millisecond, ActivationDelay: 600 * time.Millisecond})
	ctx := ctxT(t)
	c, bystander := e.client(t, acme), e.client(t, acme)
	home, err := c.GetHomeDivision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.CreateUser(ctx, genesys.CreateUser{Name: "New Hire", Email: "new.hire@acme.example", DivisionID: home.ID})
	if err != nil {
		t.Fatal(err)
	}
	// A client that did not create the user sees the platform's 404 window...
	if _, err := bystander.GetUser(ctx, u.ID); !genesys.IsNotFound(err) {
		t.Fatalf("bystander read within the 404 window: %v (the window is not exercised)", err)
	}
	// ...the creator's read waits it out.
	got, err := c.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID {
		t.Fatalf("read %s, created %s", got.ID, u.ID)
	}
	active, err := bystander.WaitUserActive(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if active.State != "active" {
		t.Fatalf("state %q", active.State)
	}
}

func TestExactNameMatchingOverPrefixFilter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	c := e.client(t, acme)
	ctx := ctxT(t)
	prefixed, err := c.ListSkills(ctx, "Billing Support")
	if err != nil {
		t.Fatal(err)
	}
	if len(prefixed) < 2 {
		t.Fatalf("prefix filter returned %d skills; the test needs several", len(prefixed))
	}
	s, found, err := c.FindSkillByName(ctx, "Billing Support")
	if err != nil || !found || s.Name != "Billing Support" {
		t.Fatalf("FindSkillByName: %+v %v %v", s, found, err)
	}
	if _, created, err := c.EnsureSkill(ctx, "Billing"); err != nil || created {
		t.Fatalf("EnsureSkill(Billing) created=%v err=%v; it exists", created, err)
	}
	b, created, err := c.EnsureSkill(ctx, "Bill")
	if err != nil || !created || b.Name != "Bill" {
		t.Fatalf("EnsureSkill(Bill): %+v created=%v err=%v", b, created, err)
	}
	if l, found, err := c.FindLanguageByName(ctx, "English"); err != nil || !found || l.Name != "English" {
		t.Fatalf("FindLanguageByName: %+v %v %v", l, found, err)
	}
	if tm, found, err := c.FindTeamByName(ctx, "Team A"); err != nil || !found || tm.Name != "Team A" {
		t.Fatalf("FindTeamByName: %+v %v %v", tm, found, err)
	}
	if q, found, err := c.FindQueueByName(ctx, "Support"); err != nil || !found || q.Name != "Support" {
		t.Fatalf("FindQueueByName: %+v %v %v", q, found, err)
	}
	if r, found, err := c.FindRoleByName(ctx, "Agent"); err != nil || !found || r.Name != "Agent" {
		t.Fatalf("FindRoleByName: %+v %v %v", r, found, err)
	}
	if _, found, err := c.FindSkillByName(ctx, "Billing Sup"); err != nil || found {
		t.Fatalf("FindSkillByName(Billing Sup) found=%v err=%v; only longer names exist", found, err)
	}
	if got := e.sim.Stats(acme).Creates["skill"]; got != 1 {
		t.Fatalf("%d skills created, want 1", got)
	}
}

func TestCursorAndPageListingsWalkEveryPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	cfg := e.config(acme)
	cfg.PageSize = 2
	seen := &calls{}
	c := e.clientWith(t, cfg, genesys.WithObserver(seen.observe))
	ctx := ctxT(t)
	teams, err := c.ListTeams(ctx, "Team")
	if err != nil {
		t.Fatal(err)
	}
	skills, err := c.ListSkills(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tm := range teams {
		names[tm.Name] = true
	}
	if len(teams) != 5 || len(names) != 5 {
		t.Fatalf("teams: %d listed, %d distinct, want 5", len(teams), len(names))
	}
	if len(skills) != 5 {
		t.Fatalf("skills: %d, want 5", len(skills))
	}
	if n := seen.count(withOp("GET /api/v2/teams")); n != 3 {
		t.Errorf("%d team pages fetched for 5 teams at 2 per page, want 3", n)
	}
	if n := seen.count(withOp("GET /api/v2/routing/skills")); n != 3 {
		t.Errorf("%d skill pages fetched for 5 skills at 2 per page, want 3", n)
	}
}

func TestBadInputRejectedBeforeSending(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	cfg := e.config(acme)
	cfg.PageSize = 500
	if _, err := genesys.New(cfg); err == nil || !strings.Contains(err.Error(), "PageSize 500 out of range 1..100") {
		t.Fatalf("oversized page size: %v", err)
	}
	seen := &calls{}
	c := e.client(t, acme, genesys.WithObserver(seen.observe))
	ctx := ctxT(t)
	checks := map[string]error{}
	_, checks["GetUser empty id"] = c.GetUser(ctx, "")
	_, checks["GetUser bad expand"] = c.GetUser(ctx, "u1", "routingProfile")
	_, checks["CreateUser no email"] = c.CreateUser(ctx, genesys.CreateUser{Name: "x", DivisionID: "d"})
	checks["proficiency"] = c.AddUserRoutingSkills(ctx, "u1", []genesys.SkillProficiency{{ID: "s", Proficiency: 9}})
	_, checks["no licenses"] = c.AssignLicenses(ctx, nil)
	checks["grant without division"] = c.GrantRoles(ctx, "u1", []genesys.RoleDivision{{RoleID: "r"}})
	for name, err := range checks {
		if !errors.Is(err, genesys.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if n := seen.count(func(genesys.Call) bool { return true }); n != 0 {
		t.Fatalf("%d requests sent for invalid input", n)
	}
}

// TestPermanentErrorsAreNotRetried: one classification decides what the
// client retries and what services treat as final. A 501 (the API lacks the
// operation) is sent once; a 503 is retried to the end of the budget; both
// surface as *APIError naming the status and code.
func TestPermanentErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	ctx := ctxT(t)
	for _, tc := range []struct {
		status    int
		code      string
		attempts  int
		permanent bool
	}{
		{status: 501, code: "not.implemented", attempts: 1, permanent: true},
		{status: 503, code: "service.unavailable", attempts: 3, permanent: false},
	} {
		if err := e.sim.SetFaults(globex, gcsim.Faults{ErrorRate: 1, ErrorStatus: tc.status}); err != nil {
			t.Fatal(err)
		}
		seen := &calls{}
		// Around the spec validator: the spec subset documents no 501.
		c := e.clientWith(t, e.config(globex), genesys.WithTransport(http.DefaultTransport), genesys.WithObserver(seen.observe),
			genesys.WithRetryPolicy(genesys.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}))
		_, err := c.GetOrganization(ctx)
		if genesys.StatusOf(err) != tc.status || !strings.Contains(err.Error(), tc.code) {
			t.Fatalf("%d: error %v", tc.status, err)
		}
		if got := seen.count(withStatus(tc.status)); got != tc.attempts {
			t.Errorf("%d: sent %d times, want %d", tc.status, got, tc.attempts)
		}
		if genesys.IsPermanent(err) != tc.permanent {
			t.Errorf("%d: IsPermanent = %v, want %v", tc.status, !tc.permanent, tc.permanent)
		}
	}
	if err := e.sim.SetFaults(globex, gcsim.Faults{}); err != nil {
		t.Fatal(err)
	}
}
