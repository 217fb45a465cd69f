package provisioner

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/events"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// withTinyPool replaces t2 by the demo's t2 plus a DID pool "Tiny" of n
// numbers (+13175557000...). Call before anything talks to t2.
func withTinyPool(t *testing.T, e *env, n int) {
	t.Helper()
	fx := gcsim.DemoFixture()
	for _, o := range fx.Orgs {
		if o.ID == targetIDs["t2"] {
			o.DIDPools = append(o.DIDPools, gcsim.FixtureDIDPool{Name: "Tiny",
				StartPhoneNumber: "+13175557000", EndPhoneNumber: fmt.Sprintf("+1317555%04d", 7000+n-1)})
			if err := e.sim.LoadFixture(&gcsim.Fixture{Orgs: []gcsim.FixtureOrg{o}}); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("fixture: t2 missing")
}

// phoneAudits are the phone-number AUDIT events of a plan, by user email prefix.
func phoneAudits(e *env, planID string) map[string]*orgsyncv1.Event {
	out := map[string]*orgsyncv1.Event{}
	for _, ev := range e.eventsOf(planID, orgsyncv1.EventKind_EVENT_KIND_AUDIT) {
		if ev.GetAttributes()["decision"] == "phone_number" {
			out[strings.SplitN(ev.GetAttributes()["alias"], "@", 2)[0]] = ev
		}
	}
	return out
}

// numberOf is the WORK phone gcsim holds for a user of t2.
func numberOf(t *testing.T, e *env, email string) string {
	t.Helper()
	u, ok := e.sim.UserByEmail(targetIDs["t2"], email)
	if !ok {
		t.Fatalf("%s missing in t2", email)
	}
	for _, a := range u.Addresses {
		if a.MediaType == "PHONE" && a.Type == "WORK" {
			return a.Address
		}
	}
	return ""
}

// TestPhonePoolExhaustedFallsBackAndRerunKeeps: both aliases map to pool
// Tiny, which has one number. One user gets it; the other's pool is
// exhausted, so they get the fallback number — both decisions are AUDIT
// events with the candidates, reason and fallback flag. A second request
// keeps both numbers, writes no address and audits "kept".
func TestPhonePoolExhaustedFallsBackAndRerunKeeps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	withTinyPool(t, e, 1)
	policy := PhonePolicy{Aliases: map[string]AliasRule{
		"john.smith@acme.example/work": {Pool: "Tiny"},
		"jane.doe@acme.example/work":   {Pool: "Tiny"},
	}, Fallback: "+13175559999"}
	e.start(Config{Orgs: []string{"t2"}, Phones: map[string]PhonePolicy{"t2": policy}}, nil)

	p := planFor(t, demoSnapshot("phone-1"), "t2")
	e.publish(p)
	if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Fatalf("TARGET %v %q", ev.GetStatus(), ev.GetReason())
	}
	// Users are worked on concurrently: either may win Tiny's number.
	pool, fb := "john.smith", "jane.doe"
	if numberOf(t, e, "jane.doe@acme.example") == "+13175557000" {
		pool, fb = fb, pool
	}
	if got := numberOf(t, e, pool+"@acme.example"); got != "+13175557000" {
		t.Errorf("%s's number %q, want Tiny's only number", pool, got)
	}
	if got := numberOf(t, e, fb+"@acme.example"); got != "+13175559999" {
		t.Errorf("%s's number %q, want the fallback", fb, got)
	}
	audits := phoneAudits(e, p.GetPlanId())
	won, fell := audits[pool], audits[fb]
	if won == nil || fell == nil {
		t.Fatalf("phone audits %v", audits)
	}
	if a := won.GetAttributes(); a["chosen"] != "+13175557000" || a["fallback_used"] != "false" || !strings.Contains(a["reason"], `first free number of pool "Tiny"`) ||
		a["rule"] != `pool "Tiny" → fallback +13175559999` || won.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Errorf("%s's audit %v %v", pool, won.GetStatus(), a)
	}
	if a := fell.GetAttributes(); a["chosen"] != "+13175559999" || a["fallback_used"] != "true" || !strings.Contains(a["reason"], `fallback: pool "Tiny" had no usable number`) ||
		a["alias"] != fb+"@acme.example/work" {
		t.Errorf("%s's audit %v", fb, a)
	}
	if fell.GetOrg() != "t2" || fell.GetKind() != orgsyncv1.EventKind_EVENT_KIND_AUDIT {
		t.Errorf("audit event on %s/%v", fell.GetOrg(), fell.GetKind())
	}
	want := map[string]string{pool: "+13175557000", fb: "+13175559999"}

	e.sim.ResetStats()
	p2 := planFor(t, demoSnapshot("phone-2"), "t2")
	e.publish(p2)
	if ev := e.waitTarget(p2.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_UNCHANGED {
		t.Fatalf("re-run TARGET %v %q", ev.GetStatus(), ev.GetReason())
	}
	if n := e.sim.Stats(targetIDs["t2"]).Requests["PATCH /api/v2/users/{userId}"]; n != 0 {
		t.Errorf("re-run patched users %d times", n)
	}
	for who, n := range want {
		if got := numberOf(t, e, who+"@acme.example"); got != n {
			t.Errorf("re-run changed %s's number to %q", who, got)
		}
	}
	for who, ev := range phoneAudits(e, p2.GetPlanId()) {
		if ev.GetStatus() != orgsyncv1.Status_STATUS_UNCHANGED || !strings.HasPrefix(ev.GetReason(), "kept") {
			t.Errorf("re-run audit of %s: %v %q", who, ev.GetStatus(), ev.GetReason())
		}
	}
}

// TestPhonePoolExhaustedWithoutFallbackFailsTheUser: with no fallback the
// user whose pool ran dry fails with the story (alias, chain, exhausted),
// and the decision is audited as FAILED; nobody gets a number twice.
func TestPhonePoolExhaustedWithoutFallbackFailsTheUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	withTinyPool(t, e, 1)
	e.start(Config{Orgs: []string{"t2"}, Phones: map[string]PhonePolicy{"t2": {DefaultPool: "Tiny"}}}, nil)
	p := planFor(t, demoSnapshot("phone-nofb"), "t2")
	e.publish(p)
	if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_FAILED {
		t.Fatalf("TARGET %v %q", ev.GetStatus(), ev.GetReason())
	}
	var loser *orgsyncv1.Event
	for _, ev := range phoneAudits(e, p.GetPlanId()) {
		if ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED {
			loser = ev
		}
	}
	if loser == nil {
		t.Fatal("no FAILED phone audit")
	}
	alias := loser.GetAttributes()["alias"]
	if !strings.Contains(loser.GetReason(), fmt.Sprintf("no number for alias %q", alias)) ||
		!strings.Contains(loser.GetReason(), `default pool "Tiny" exhausted`) || !strings.Contains(loser.GetReason(), "no fallback configured") {
		t.Errorf("audit reason %q", loser.GetReason())
	}
	if n := numberOf(t, e, strings.TrimSuffix(alias, "/work")); n != "" {
		t.Errorf("%s got %s anyway", alias, n)
	}
}

// TestPhoneAllocationRaceNoDoubleAssignment: two engines (as two
// provisioner processes would) apply two plans at once, four users racing
// for a pool of three numbers plus a fallback number. Both engines list
// the same free numbers; the API's one-owner rule (409) moves the loser
// to the next one. Every user ends with a distinct number, none is held
// twice, and each decision is audited.
func TestPhoneAllocationRaceNoDoubleAssignment(t *testing.T) {
	t.Parallel()
	// Latency widens the window between an engine's DID listing and its
	// PATCH, so the engines really contend for the same numbers.
	e := newEnv(t, gcsim.Config{Latency: 5 * time.Millisecond})
	withTinyPool(t, e, 3)
	phones := map[string]PhonePolicy{"t2": {DefaultPool: "Tiny", Fallback: "+13175559999"}}
	snap := batchSnapshot("race", 4)
	a, b := planFor(t, snap, "t2"), planFor(t, snap, "t2")
	a.PlanId, b.PlanId = "race-a|t2", "race-b|t2"
	a.Users, b.Users = a.Users[:2], b.Users[2:]
	var wg sync.WaitGroup
	errs := make([]error, 2)
	engines := make([]*Engine, 2)
	for i, p := range []*orgsyncv1.Plan{a, b} {
		preflightIDs(t, e, p)
		store, err := OpenStore(filepath.Join(t.TempDir(), fmt.Sprintf("engine%d.db", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		engines[i] = NewEngine(EngineDeps{Clients: e.reg, Store: store, Events: events.New(e.js), Logger: slog.New(slog.DiscardHandler)},
			EngineConfig{Phones: phones})
	}
	// The shared skills, languages and teams first, so the users of both
	// plans run side by side.
	warm := proto.Clone(a).(*orgsyncv1.Plan)
	warm.PlanId, warm.Users = "race-warm|t2", nil
	if _, err := engines[0].Apply(context.Background(), warm); err != nil {
		t.Fatal(err)
	}
	for i, p := range []*orgsyncv1.Plan{a, b} {
		eng := engines[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = eng.Apply(context.Background(), p)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("plan %d: %v", i, err)
		}
	}
	owners := map[string]string{}
	for i := range 4 {
		email := fmt.Sprintf("agent%02d@acme.example", i)
		n := numberOf(t, e, email)
		if n == "" {
			t.Errorf("%s has no number", email)
			continue
		}
		if other, dup := owners[n]; dup {
			t.Errorf("%s assigned to %s and %s", n, other, email)
		}
		owners[n] = email
	}
	for _, want := range []string{"+13175557000", "+13175557001", "+13175557002", "+13175559999"} {
		if owners[want] == "" {
			t.Errorf("%s unused; owners %v", want, owners)
		}
	}
	refused := 0
	for _, p := range []*orgsyncv1.Plan{a, b} {
		for _, ev := range phoneAudits(e, p.GetPlanId()) {
			refused += strings.Count(ev.GetAttributes()["candidates"], "(409)")
		}
	}
	t.Logf("owners %v; %d number(s) lost to the other engine (409) and moved on", owners, refused)
}
