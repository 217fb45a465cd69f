package gcsim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// checkIndexes fails t unless every org index equals what a scan of the
// users finds.
func checkIndexes(t *testing.T, o *org) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for k, us := range o.emails {
		n += len(us)
		for _, u := range us {
			if o.users[u.id] != u || foldKey(u.email) != k {
				t.Errorf("emails[%q] holds %s (%s), not a user with that email", k, u.id, u.email)
			}
		}
	}
	if n != len(o.users) {
		t.Errorf("emails index holds %d users, org has %d", n, len(o.users))
	}
	pairs := map[externalID]*user{}
	for _, u := range o.users {
		for _, e := range u.externalIDs {
			pairs[e] = u
		}
	}
	if len(pairs) != len(o.extIDs) {
		t.Errorf("extIDs index has %d pairs, users hold %d", len(o.extIDs), len(pairs))
	}
	for e, u := range pairs {
		if o.extIDs[e] != u {
			t.Errorf("extIDs[%v] = %v, want user %s", e, o.extIDs[e], u.id)
		}
	}
	for _, tm := range o.teams {
		want := map[string]bool{}
		for _, u := range o.users {
			if u.teamID == tm.id {
				want[u.id] = true
			}
		}
		if len(want) != len(tm.members) {
			t.Errorf("team %s: %d members indexed, %d users in it", tm.name, len(tm.members), len(want))
		}
		for id := range want {
			if !tm.members[id] {
				t.Errorf("team %s: member %s not indexed", tm.name, id)
			}
		}
	}
	assigned := 0
	for i := range o.dids {
		d := &o.dids[i]
		if d.owner != o.phoneOwner(d.num) {
			t.Errorf("DID %s: owner %v, phones says %v", d.num, d.owner, o.phoneOwner(d.num))
		}
		if d.owner != nil {
			assigned++
		}
	}
	if assigned != o.didsAssigned {
		t.Errorf("didsAssigned = %d, %d DIDs have an owner", o.didsAssigned, assigned)
	}
}

func TestIndexesFollowChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(t1CID, t1Sec)
	o := e.sim.lookupOrg(t1Org)
	checkIndexes(t, o)

	home := e.expect(200, tok, "GET", "/api/v2/authorization/divisions/home", nil).json(t)["id"]
	var ids []string
	for i := range 4 {
		u := e.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": fmt.Sprintf("Index %d", i), "email": fmt.Sprintf("Index%d@acme.example", i), "divisionId": home,
			"addresses": []map[string]any{{"address": fmt.Sprintf("+1317555100%d", i+1), "mediaType": "PHONE", "type": "WORK"}}}).json(t)
		ids = append(ids, u["id"].(string))
	}
	e.expectError(409, "general.conflict", tok, "POST", "/api/v2/users", map[string]any{"name": "Dup", "email": "INDEX1@acme.example", "divisionId": home})
	checkIndexes(t, o)

	e.expect(200, tok, "PATCH", "/api/v2/users/"+ids[0], map[string]any{"version": 1, "email": "moved@acme.example",
		"addresses": []map[string]any{{"address": "+13175551009", "mediaType": "PHONE"}}})
	e.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": "Reuse", "email": "index0@acme.example", "divisionId": home})
	e.expect(200, tok, "POST", "/api/v2/users/"+ids[1]+"/externalid", map[string]any{"authorityName": "a", "externalKey": "k1"})
	e.expectError(409, "general.conflict", tok, "POST", "/api/v2/users/"+ids[2]+"/externalid", map[string]any{"authorityName": "a", "externalKey": "k1"})
	e.expect(200, tok, "POST", "/api/v2/users/"+ids[2]+"/externalid", map[string]any{"authorityName": "a", "externalKey": "k2"})
	e.expect(204, tok, "DELETE", "/api/v2/users/"+ids[1]+"/externalid/a/k1", nil)
	e.expect(200, tok, "POST", "/api/v2/users/"+ids[3]+"/externalid", map[string]any{"authorityName": "a", "externalKey": "k1"})
	checkIndexes(t, o)

	team := e.expect(200, tok, "POST", "/api/v2/teams", map[string]any{"name": "Index team"}).json(t)["id"].(string)
	other := e.expect(200, tok, "POST", "/api/v2/teams", map[string]any{"name": "Other team"}).json(t)["id"].(string)
	e.expect(200, tok, "POST", "/api/v2/teams/"+team+"/members", map[string]any{"memberIds": ids})
	e.expect(200, tok, "POST", "/api/v2/teams/"+other+"/members", map[string]any{"memberIds": ids[:2]})
	e.expect(204, tok, "DELETE", "/api/v2/teams/"+team+"/members?id="+ids[2], nil)
	checkIndexes(t, o)
	e.clock.Advance(DefaultNotFoundAfterCreate) // the new team becomes readable by id
	if got := e.expect(200, tok, "GET", "/api/v2/teams/"+other, nil).json(t)["memberCount"]; got != 2.0 {
		t.Fatalf("memberCount = %v, want 2", got)
	}

	e.expect(200, tok, "DELETE", "/api/v2/users/"+ids[0], nil)
	e.expect(200, tok, "DELETE", "/api/v2/users/"+ids[3], nil)
	e.expect(204, tok, "DELETE", "/api/v2/teams/"+other, nil)
	checkIndexes(t, o)
	e.expect(404, tok, "GET", "/api/v2/users/externalid/a/k1", nil)
	if n := e.sim.CountUsersByEmail(t1Org, "MOVED@acme.example"); n != 0 {
		t.Fatalf("CountUsersByEmail(deleted user's email) = %d", n)
	}
}

// TestFoldKeyIsEqualFold: foldKey(a) == foldKey(b) exactly when
// strings.EqualFold(a, b).
func TestFoldKeyIsEqualFold(t *testing.T) {
	t.Parallel()
	alphabet := []string{"a", "A", "k", "K", "\u212a", "s", "S", "\u017f", "ß", "ẞ", "é", "É", "σ", "ς", "Σ", "İ", "ı", "i", "I", "\xff", "\ufffd", "@", "1", "ǅ", "ǆ", "Ǆ"}
	var words []string
	for _, a := range alphabet {
		words = append(words, a)
		for _, b := range alphabet {
			words = append(words, a+b)
		}
	}
	for _, a := range words {
		for _, b := range words {
			if (foldKey(a) == foldKey(b)) != strings.EqualFold(a, b) {
				t.Fatalf("foldKey(%q) == foldKey(%q) is %v, EqualFold is %v", a, b, foldKey(a) == foldKey(b), strings.EqualFold(a, b))
			}
		}
	}
}

// TestSortByNameOrder: sortByName orders as comparing strings.ToLower of
// the names, then the ids.
func TestSortByNameOrder(t *testing.T) {
	t.Parallel()
	type item struct{ name, id string }
	parts := []string{"a", "A", "b", "É", "é", "ſ", "s", "S", " ", "1", "Z", "z", "\xff"}
	rng := rand.New(rand.NewPCG(1, 2))
	var items []item
	for i := range 500 {
		var b strings.Builder
		for range 1 + rng.IntN(3) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		items = append(items, item{b.String(), fmt.Sprintf("%03d", rng.IntN(1000-i))})
	}
	want := slices.Clone(items)
	sort.Slice(want, func(i, j int) bool {
		ni, nj := strings.ToLower(want[i].name), strings.ToLower(want[j].name)
		if ni != nj {
			return ni < nj
		}
		return want[i].id < want[j].id
	})
	got := slices.Clone(items)
	sortByName(got, func(it item) string { return it.name }, func(it item) string { return it.id })
	for i := range want {
		// Items equal in both keys may come in any order.
		if strings.ToLower(got[i].name) != strings.ToLower(want[i].name) || got[i].id != want[i].id {
			t.Fatalf("position %d: %q/%s, want %q/%s", i, got[i].name, got[i].id, want[i].name, want[i].id)
		}
	}
}
