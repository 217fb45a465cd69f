package gcsim

import (
	"net/http"
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

func (d *didEntry) stableID(orgID string) string {
	if d.id == "" {
		d.id = stableID(orgID, "did", d.num)
	}
	return d.id
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
	match := strings.TrimPrefix(normalizePhone(q.Get("numberMatch")), "+")
	desc := strings.EqualFold(q.Get("sortOrder"), "descending") || strings.EqualFold(q.Get("sortOrder"), "desc")
	size, number, err := pageParams(r)
	if err != nil {
		return 0, nil, err
	}
	// Walk the sorted numbers (owners kept by setAddresses) and keep only
	// the requested page's. Without pool or number filters the total is
	// known from the counts, so the walk stops after the page.
	lo := (number - 1) * size
	total, known := 0, pools == nil && match == ""
	if known {
		switch typ {
		case "UNASSIGNED":
			total = len(o.dids) - o.didsAssigned
		case "ASSIGNED":
			total = o.didsAssigned
		default:
			total = len(o.dids)
		}
	}
	var pageDIDs []*didEntry
	seen := 0
	for i := range o.dids {
		if known && seen >= lo+size {
			break
		}
		d := &o.dids[i]
		if desc {
			d = &o.dids[len(o.dids)-1-i]
		}
		if (pools != nil && !pools[d.pool.id]) || (match != "" && !strings.Contains(d.num, match)) ||
			(typ == "UNASSIGNED" && d.owner != nil) || (typ == "ASSIGNED" && d.owner == nil) {
			continue
		}
		if seen >= lo && seen < lo+size {
			pageDIDs = append(pageDIDs, d)
		}
		seen++
	}
	if !known {
		total = seen
	}
	out, _, _ := pageWindow[map[string]any](r, size, number, total)
	out.Entities = make([]map[string]any, 0, len(pageDIDs))
	for _, d := range pageDIDs {
		m := map[string]any{
			"id":       d.stableID(o.id),
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
