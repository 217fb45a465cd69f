package genesys

import (
	"fmt"
	"testing"
	"time"
)

// TestCreatedUsersAreForgottenAfterTheWindow: a provisioner creates users
// for days; the client remembers each only for the 404 window after its
// create (ConsistencyWindow), not for the process's life.
func TestCreatedUsersAreForgottenAfterTheWindow(t *testing.T) {
	t.Parallel()
	c, err := New(OrgConfig{OrgID: "acme", Region: "mypurecloud.ie", ClientID: "id", ClientSecret: "s", ConsistencyWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for i := range 1000 { // an hour of creates, one every 3.6 s
		c.rememberCreated(fmt.Sprintf("user-%d", i), t0.Add(time.Duration(i)*3600*time.Millisecond))
	}
	// Within the last minute: 17 creates (3.6 s apart) are remembered.
	if n := len(c.created); n > 17 || len(c.createdOrder) != n {
		t.Errorf("after 1,000 creates over an hour the client remembers %d (in order %d); want the last minute's, at most 17", n, len(c.createdOrder))
	}
	if _, ok := c.created["user-999"]; !ok {
		t.Error("the last user created is forgotten")
	}
	if _, ok := c.created["user-0"]; ok {
		t.Error("the first user, created an hour ago, is still remembered")
	}

	// A user created again (a lost answer re-posted) is remembered from
	// its last create, not dropped with its first one.
	c2, _ := New(OrgConfig{OrgID: "acme", Region: "mypurecloud.ie", ClientID: "id", ClientSecret: "s", ConsistencyWindow: time.Minute})
	c2.rememberCreated("jane", t0)
	c2.rememberCreated("jane", t0.Add(50*time.Second))
	c2.rememberCreated("joe", t0.Add(90*time.Second))
	if _, ok := c2.created["jane"]; !ok {
		t.Error("jane, created again 40 s ago, is forgotten with her first create")
	}
}
