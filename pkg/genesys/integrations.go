package genesys

import (
	"context"
	"net/http"
)

var opListIntegrations = op(http.MethodGet, "/api/v2/integrations")

// ListIntegrations lists the org's integration instances with their
// reportedState (there is no per-user integration status in Genesys Cloud).
func (c *Client) ListIntegrations(ctx context.Context) ([]Integration, error) {
	return collect(listByPageNumber[Integration](ctx, c, request{op: opListIntegrations}))
}
