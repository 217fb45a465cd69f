package gcsim

import (
	"net/http"
	"sort"
	"strings"
)

func (o *org) renderDIDPool(p *didPool) map[string]any {
	m := map[string]any{
		"id":               p.id,
		"name":             p.name,
		"startPhoneNumber": p.start,
		"endPhoneNumber":   p.end,
		"provider":         "PURE_CLOUD_VOICE",
		"state":            "active",
		"version":          1,
		"selfUri":          "/api/v2/telephony/providers/edges/didpools/" + p.id,
	}
	if p.description != "" {
		m["description"] = p.description
	}
	return m
}

// GET /api/v2/telephony/providers/edges/didpools
func (s *Sim) listDIDPools(r *http.Request, o *org) (int, any, *apiError) {
	ids := idFilter(r, "id")
	var out []map[string]any
	for _, p := range sortedBy(o.didPools, func(p *didPool) string { return p.name }, func(p *didPool) string { return p.id }) {
		if ids == nil || ids[p.id] {
			out = append(out, o.renderDIDPool(p))
		}
	}
	pg, err := paginate(r, out)
	if err != nil {
		return 0, nil, err
	}
	return 200, pg, nil
}

// GET /api/v2/telephony/providers/edges/didpools/{didPoolId}
func (s *Sim) getDIDPool(r *http.Request, o *org) (int, any, *apiError) {
	p := o.didPools[r.PathValue("didPoolId")]
	if p == nil {
		return 0, nil, notFound("DID pool %s not found", r.PathValue("didPoolId"))
	}
	return 200, o.renderDIDPool(p), nil
}

// GET /api/v2/telephony/providers/edges/didpools/dids?type=...: the numbers
// of the org's pools. A number is assigned when some user's PHONE address
// holds it (ownership comes from user addresses). type is UNASSIGNED,
// ASSIGNED_AND_UNASSIGNED or (simulator extension) ASSIGNED.
func (s *Sim) listDIDNumbers(r *http.Request, o *org) (int, any, *apiError) {
	q := r.URL.Query()
	typ := q.Get("type")
	switch typ {
	case "UNASSIGNED", "ASSIGNED_AND_UNASSIGNED", "ASSIGNED":
	case "":
		return 0, nil, badRequest("query parameter type is required (UNASSIGNED or ASSIGNED_AND_UNASSIGNED)")
	default:
		return 0, nil, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [type]. Allowable values are: ASSIGNED_AND_UNASSIGNED, UNASSIGNED", typ)
	}
	pools := idFilter(r, "id")
	match := normalizePhone(q.Get("numberMatch"))
	type did struct {
		pool  *didPool
		num   string
		owner *user
	}
	var dids []did
	for _, p := range o.didPools {
		if pools != nil && !pools[p.id] {
			continue
		}
		for _, n := range p.numbers {
			if match != "" && !strings.Contains(n, strings.TrimPrefix(match, "+")) {
				continue
			}
			owner := o.phoneOwner(n)
			if (typ == "UNASSIGNED" && owner != nil) || (typ == "ASSIGNED" && owner == nil) {
				continue
			}
			dids = append(dids, did{p, n, owner})
		}
	}
	desc := strings.EqualFold(q.Get("sortOrder"), "descending") || strings.EqualFold(q.Get("sortOrder"), "desc")
	less := func(i, j int) bool {
		if desc {
			return dids[i].num > dids[j].num
		}
		return dids[i].num < dids[j].num
	}
	if !sort.SliceIsSorted(dids, less) { // one pool's numbers already are
		sort.Slice(dids, less)
	}
	// Paginate the cheap records, then render only the page (a pool holds
	// up to 10,000 numbers).
	pg, err := paginate(r, dids)
	if err != nil {
		return 0, nil, err
	}
	out := page[map[string]any]{PageSize: pg.PageSize, PageNumber: pg.PageNumber, Total: pg.Total, PageCount: pg.PageCount,
		SelfURI: pg.SelfURI, FirstURI: pg.FirstURI, LastURI: pg.LastURI, NextURI: pg.NextURI, PreviousURI: pg.PreviousURI,
		Entities: make([]map[string]any, 0, len(pg.Entities))}
	for _, d := range pg.Entities {
		m := map[string]any{
			"id":       stableID(o.id, "did", d.num),
			"name":     d.num,
			"number":   d.num,
			"assigned": d.owner != nil,
			"didPool":  map[string]any{"id": d.pool.id, "selfUri": "/api/v2/telephony/providers/edges/didpools/" + d.pool.id},
		}
		if d.owner != nil {
			m["owner"] = map[string]any{"id": d.owner.id, "name": d.owner.name, "selfUri": "/api/v2/users/" + d.owner.id}
			m["ownerType"] = "USER"
		}
		out.Entities = append(out.Entities, m)
	}
	return 200, out, nil
}
