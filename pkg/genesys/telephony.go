package genesys

import (
	"context"
	"net/http"
	"net/url"
)

var (
	opListDIDPools = op(http.MethodGet, "/api/v2/telephony/providers/edges/didpools")
	opListPoolDIDs = op(http.MethodGet, "/api/v2/telephony/providers/edges/didpools/dids")
)

// ListDIDPools lists the org's DID pools.
func (c *Client) ListDIDPools(ctx context.Context) ([]DIDPool, error) {
	return collect(listByPageNumber[DIDPool](ctx, c, request{op: opListDIDPools}))
}

// ListUnassignedDIDs lists the DIDs of the org's pools that no one owns
// (type=UNASSIGNED): the numbers free to give a user as a WORK phone address.
// DIDs are read-only; a number is "assigned" by putting it in the user's
// addresses.
func (c *Client) ListUnassignedDIDs(ctx context.Context) ([]DIDNumber, error) {
	return collect(listByPageNumber[DIDNumber](ctx, c, request{op: opListPoolDIDs, query: url.Values{"type": {"UNASSIGNED"}}}))
}
