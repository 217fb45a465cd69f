package genesys

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
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

// ListUnassignedDIDsPage reads page pageNumber (1-based, the client's page
// size) of the free DIDs (type=UNASSIGNED); more is false on the last page.
// Callers that need a few numbers of a large pool read pages only as they
// run out — one call instead of one per 100 numbers of the whole pool.
// Pages shift as numbers get assigned meanwhile, so a later page may skip
// numbers that became the earlier pages' tail: fine for handing out free
// numbers, not for an inventory (use ListUnassignedDIDs).
func (c *Client) ListUnassignedDIDsPage(ctx context.Context, pageNumber int) (dids []DIDNumber, more bool, err error) {
	size := c.cfg.PageSize
	if size < 1 || size > MaxPageSize {
		return nil, false, invalidArg(opListPoolDIDs, "pageSize %d out of range 1..%d", size, MaxPageSize)
	}
	if pageNumber < 1 || pageNumber > maxPages {
		return nil, false, invalidArg(opListPoolDIDs, "pageNumber %d out of range 1..%d", pageNumber, maxPages)
	}
	var page entityPage[DIDNumber]
	q := url.Values{"type": {"UNASSIGNED"}, "pageSize": {strconv.Itoa(size)}, "pageNumber": {strconv.Itoa(pageNumber)}}
	if err := c.do(ctx, request{op: opListPoolDIDs, query: q, out: &page, idempotent: true}); err != nil {
		return nil, false, err
	}
	if page.PageCount > 0 {
		more = pageNumber < page.PageCount
	} else {
		more = len(page.Entities) == size
	}
	return page.Entities, more && pageNumber < maxPages, nil
}
