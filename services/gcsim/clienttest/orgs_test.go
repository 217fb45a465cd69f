package clienttest_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/services/gcsim"
)

func TestRegistryCountsCallsPerContext(t *testing.T) {
	sim, err := gcsim.New(gcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(gcsim.DemoFixture()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	reg := orgs.NewRegistry(map[string]genesys.OrgConfig{
		"t1": {APIBaseURL: srv.URL, LoginBaseURL: srv.URL, ClientID: "target1-client", ClientSecret: "target1-secret"},
	})

	if _, err := reg.Client("nope"); !errors.Is(err, orgs.ErrUnknownOrg) {
		t.Fatalf("unknown org: err = %v", err)
	}
	c1, err := reg.Client("t1")
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := reg.Client("t1"); c1 != c2 {
		t.Fatal("two clients for one org: the rate budget would be split")
	}

	ctx, n := orgs.WithCounter(context.Background())
	if _, err := c1.ListSkills(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c1.FindUserByEmail(ctx, "nobody@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.ListSkills(context.Background(), ""); err != nil { // not counted
		t.Fatal(err)
	}
	if u := n.Usage(); u.Reads != 2 || u.Writes != 0 || n.Total() != 2 {
		t.Fatalf("usage = %v, want 2 reads (list + search)", u)
	}
}
