package authclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/authclient"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func TestNoAuthServiceIsAClearError(t *testing.T) {
	t.Parallel()
	nc, js := natsxtest.Start(t)
	kv, err := natsx.TokenKV(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	_, err = authclient.TokenSource(nc, kv, "acme-src").Token()
	if !errors.Is(err, authclient.ErrNoAuthService) || !strings.Contains(err.Error(), "no auth service is running for org acme-src") {
		t.Fatalf("err = %v", err)
	}
}

func TestInvalidOrgKey(t *testing.T) {
	t.Parallel()
	nc, _ := natsxtest.Start(t)
	if _, err := authclient.TokenSource(nc, nil, "acme.*").Token(); err == nil || !strings.Contains(err.Error(), "acme.*") {
		t.Fatalf("err = %v", err)
	}
}

// A valid cached token is served from the KV without any auth service.
func TestServesUnexpiredTokenFromKV(t *testing.T) {
	t.Parallel()
	nc, js := natsxtest.Start(t)
	ctx := context.Background()
	kv, _ := natsx.TokenKV(ctx, js)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	put := func(tok string, expires time.Time) {
		b, _ := proto.Marshal(&orgsyncv1.TokenReply{AccessToken: tok, TokenType: "bearer", ExpiresAt: timestamppb.New(expires)})
		if _, err := kv.Put(ctx, "acme-src", b); err != nil {
			t.Fatal(err)
		}
	}
	put("cached-token", exp)
	ts := authclient.New(nc, kv, "acme-src")
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "cached-token" || !tok.Expiry.Equal(exp) {
		t.Fatalf("token %q expiry %v", tok.AccessToken, tok.Expiry)
	}
	// Reported rejected: the source must not hand it out again; with no
	// auth service running that is the clear error.
	ts.Invalidate(tok)
	if _, err := ts.Token(); !errors.Is(err, authclient.ErrNoAuthService) {
		t.Fatalf("after Invalidate: %v", err)
	}
	// Expired entry: ignored.
	put("stale-token", time.Now().Add(-time.Minute))
	if _, err := authclient.New(nc, kv, "acme-src").Token(); !errors.Is(err, authclient.ErrNoAuthService) {
		t.Fatalf("expired entry served: %v", err)
	}
}
