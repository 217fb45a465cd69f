package extid

import (
	"testing"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		typ  orgsyncv1.ResourceType
		name string
		want string
	}{
		{orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL, "Billing Support", "acme|SKILL|Billing Support"},
		{orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE, "Sales|EMEA", "acme|QUEUE|Sales|EMEA"},
	} {
		got := Resource("acme", tc.typ, tc.name)
		if got != tc.want {
			t.Fatalf("Resource = %q, want %q", got, tc.want)
		}
		id, err := Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if id.SourceOrg != "acme" || id.Type != tc.typ || id.Name != tc.name || id.String() != got {
			t.Fatalf("Parse(%q) = %+v", got, id)
		}
	}
}

func TestUserIsCaseInsensitive(t *testing.T) {
	if a, b := User("acme", "Jane.Doe@Example.com "), User("acme", "jane.doe@example.com"); a != b {
		t.Fatalf("%q != %q", a, b)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "acme", "acme|SKILL", "acme|SKILL|", "|SKILL|x", "acme|WIDGET|x", "acme|UNSPECIFIED|x"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded", s)
		}
	}
}
