package genesys

import (
	"context"
	"net/http"
)

var (
	opGetOrganization     = op(http.MethodGet, "/api/v2/organizations/me")
	opListLimitNamespaces = op(http.MethodGet, "/api/v2/organizations/limits/namespaces")
)

// GetOrganization reads the org the client's token belongs to.
func (c *Client) GetOrganization(ctx context.Context) (*Organization, error) {
	var o Organization
	err := c.do(ctx, request{op: opGetOrganization, out: &o, idempotent: true})
	return &o, err
}

// ListLimitNamespaces lists the namespaces of the org's API limits.
func (c *Client) ListLimitNamespaces(ctx context.Context) ([]LimitNamespace, error) {
	return collect(listByPageNumber[LimitNamespace](ctx, c, request{op: opListLimitNamespaces}))
}
