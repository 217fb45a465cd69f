package gcsim

import (
	"strings"
	"testing"
)

func TestDemoFixtureContents(t *testing.T) {
	t.Parallel()
	sim, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(DemoFixture()); err != nil {
		t.Fatal(err)
	}
	if got := len(sim.OrgIDs()); got != 4 {
		t.Fatalf("demo has %d orgs, want 4 (1 source + 3 targets)", got)
	}
	jane, ok := sim.UserByEmail(srcOrg, "jane.doe@acme.example")
	if !ok {
		t.Fatal("demo source lacks jane.doe@acme.example")
	}
	if jane.Manager != "john.smith@acme.example" || jane.Team != "Billing Team" || len(jane.Skills) < 2 || len(jane.Languages) < 2 ||
		len(jane.Queues) < 2 || len(jane.Grants) < 1 || jane.Utilization == nil || len(jane.Licenses) != 1 || jane.Title == "" || jane.Department == "" ||
		len(jane.Addresses) != 1 || jane.Addresses[0].MediaType != "PHONE" || jane.Addresses[0].Type != "WORK" {
		t.Fatalf("reference user jane is incomplete: %+v", jane)
	}
	if n := sim.CountUsersByEmail(t1Org, "jane.doe@acme.example"); n != 1 {
		t.Fatalf("target 1 must have a pre-existing user with jane's email, has %d", n)
	}
	if sim.CountSkillsByName(t2Org, "Billing") != 1 || sim.CountSkillsByName(t1Org, "Billing Support Tier 2") != 1 {
		t.Fatal("targets lack the prefix-trap skills")
	}
}

func TestParseFixtureErrors(t *testing.T) {
	t.Parallel()
	const org = `"id":"5f0c2a4e-0000-4000-8000-0000000000f1","name":"O","clients":[{"clientId":"c","clientSecret":"s"}]`
	cases := []struct {
		name, json string
		want       []string // substrings of the error
	}{
		{"malformed", `{"orgs":[{` + org + `,}]}`, []string{"malformed JSON", "line 1"}},
		{"unknown field", `{"orgs":[{` + org + `,"skilz":[]}]}`, []string{"skilz"}},
		{"no orgs", `{"orgs":[]}`, []string{"no orgs"}},
		{"bad org id", `{"orgs":[{"id":"x","name":"O","clients":[{"clientId":"c","clientSecret":"s"}]}]}`, []string{`org "O"`, "UUID"}},
		{"missing clients", `{"orgs":[{"id":"5f0c2a4e-0000-4000-8000-0000000000f1","name":"O"}]}`, []string{`org "O"`, "clients"}},
		{"duplicate client across orgs", `{"orgs":[{` + org + `},{"id":"5f0c2a4e-0000-4000-8000-0000000000f2","name":"P","clients":[{"clientId":"c","clientSecret":"t"}]}]}`, []string{`org "P"`, `clientId "c"`}},
		{"duplicate skill", `{"orgs":[{` + org + `,"skills":[{"name":"Billing"},{"name":"billing"}]}]}`, []string{`org "O"`, "skills[1]", `duplicate name "billing"`}},
		{"duplicate email", `{"orgs":[{` + org + `,"users":[{"name":"A","email":"a@x.io"},{"name":"B","email":"A@x.io"}]}]}`, []string{`user "A@x.io"`, "duplicate email"}},
		{"unknown skill", `{"orgs":[{` + org + `,"licenses":[{"id":"cx2"}],"users":[{"name":"A","email":"a@x.io","licenses":["cx2"],"skills":[{"name":"Nope","proficiency":3}]}]}]}`, []string{`user "a@x.io"`, "skills[0]", `unknown skill "Nope"`}},
		{"unknown manager", `{"orgs":[{` + org + `,"users":[{"name":"A","email":"a@x.io","manager":"b@x.io"}]}]}`, []string{`user "a@x.io"`, "manager", `"b@x.io"`}},
		{"unknown team", `{"orgs":[{` + org + `,"users":[{"name":"A","email":"a@x.io","team":"T"}]}]}`, []string{"team", `unknown team "T"`}},
		{"unknown role", `{"orgs":[{` + org + `,"users":[{"name":"A","email":"a@x.io","grants":[{"role":"R"}]}]}]}`, []string{"grants[0].role", `unknown role "R"`}},
		{"unknown division", `{"orgs":[{` + org + `,"queues":[{"name":"Q","division":"Nowhere"}]}]}`, []string{`queue "Q"`, `unknown division "Nowhere"`}},
		{"unknown license", `{"orgs":[{` + org + `,"users":[{"name":"A","email":"a@x.io","licenses":["cx9"]}]}]}`, []string{"licenses[0]", `unknown license "cx9"`}},
		{"unlicensed skills", `{"orgs":[{` + org + `,"skills":[{"name":"S"}],"users":[{"name":"A","email":"a@x.io","skills":[{"name":"S","proficiency":1}]}]}]}`, []string{`user "a@x.io"`, "require a license"}},
		{"shared DID", `{"orgs":[{` + org + `,"users":[{"name":"A","email":"a@x.io","addresses":[{"address":"+15550001","mediaType":"PHONE","type":"WORK"}]},{"name":"B","email":"b@x.io","addresses":[{"address":"+15550001","mediaType":"PHONE","type":"WORK"}]}]}]}`, []string{`user "b@x.io"`, "+15550001", "already held"}},
		{"bad DID range", `{"orgs":[{` + org + `,"didPools":[{"name":"P","startPhoneNumber":"+15550100","endPhoneNumber":"+1555019"}]}]}`, []string{`didPool "P"`, "equal length"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseFixture([]byte(c.json))
			if err == nil {
				t.Fatalf("ParseFixture accepted %s", c.json)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), `"clientSecret"`) || strings.Contains(err.Error(), "secret\"") {
				t.Errorf("error leaks a secret: %q", err)
			}
		})
	}
}

func TestLoadFixtureRejectsClientOfAnotherOrg(t *testing.T) {
	t.Parallel()
	sim, _ := New(Config{})
	if err := sim.LoadFixture(DemoFixture()); err != nil {
		t.Fatal(err)
	}
	f, err := ParseFixture([]byte(`{"orgs":[{"id":"5f0c2a4e-0000-4000-8000-0000000000f1","name":"Intruder","clients":[{"clientId":"source-client","clientSecret":"x"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(f); err == nil || !strings.Contains(err.Error(), `"source-client"`) {
		t.Fatalf("LoadFixture with a taken clientId: %v", err)
	}
	// Reloading the same orgs replaces them.
	if err := sim.LoadFixture(DemoFixture()); err != nil {
		t.Fatalf("reload demo: %v", err)
	}
}
