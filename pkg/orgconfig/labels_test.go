package orgconfig

import (
	"slices"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	c, err := New(map[string]Org{
		"src": {APIBaseURL: "http://x", LoginBaseURL: "http://x"},
		"eu1": {APIBaseURL: "http://x", LoginBaseURL: "http://x", Labels: map[string]string{"region": "emea", "tier": "regional"}},
		"eu2": {APIBaseURL: "http://x", LoginBaseURL: "http://x", Labels: map[string]string{"region": "emea"}},
		"us1": {APIBaseURL: "http://x", LoginBaseURL: "http://x", Labels: map[string]string{"region": "amer", "tier": "regional"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for sel, want := range map[string][]string{
		"region=emea":                {"eu1", "eu2"},
		"tier=regional":              {"eu1", "us1"},
		"region=emea,tier=regional":  {"eu1"},
		"region in (emea amer),tier": {"eu1", "us1"},
		"region!=emea":               {"src", "us1"},
		"tier, region == amer":       {"us1"},
	} {
		s, err := ParseSelector(sel)
		if err != nil {
			t.Fatalf("%q: %v", sel, err)
		}
		if got := c.Matching(s); !slices.Equal(got, want) {
			t.Errorf("%q: got %v, want %v", sel, got, want)
		}
	}
	for sel, want := range map[string]string{"": "empty label selector", "region=": `value ""`, "re gion=x": "label key", "region=a b": "value"} {
		if _, err := ParseSelector(sel); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", sel, err, want)
		}
	}
	if _, err := New(map[string]Org{"a": {APIBaseURL: "http://x", LoginBaseURL: "http://x", Labels: map[string]string{"bad key": "v"}}}); err == nil || !strings.Contains(err.Error(), `label key "bad key"`) {
		t.Errorf("bad label key accepted: %v", err)
	}
}
