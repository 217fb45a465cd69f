package gcsim

import (
	"maps"
	"net/http"
	"slices"
)

func (o *org) renderIntegration(in *integration) map[string]any {
	return map[string]any{
		"id":              in.id,
		"name":            in.name,
		"integrationType": map[string]any{"id": in.typeID, "name": in.typeID},
		"intendedState":   "ENABLED",
		"reportedState":   map[string]any{"code": in.reportedState, "effective": in.reportedState, "lastUpdated": fmtTime(in.created)},
		"attributes":      map[string]string{},
		"selfUri":         "/api/v2/integrations/" + in.id,
	}
}

// GET /api/v2/integrations (integrationType and reportedState filter).
func (s *Sim) listIntegrations(r *http.Request, o *org) (int, any, *apiError) {
	typ, state := r.URL.Query().Get("integrationType"), r.URL.Query().Get("reportedState")
	var out []map[string]any
	for _, in := range sortedBy(o.integrations, func(i *integration) string { return i.name }, func(i *integration) string { return i.id }) {
		if (typ != "" && typ != in.typeID) || (state != "" && state != in.reportedState) {
			continue
		}
		out = append(out, o.renderIntegration(in))
	}
	p, err := paginate(r, out)
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

// GET /api/v2/integrations/{integrationId}
func (s *Sim) getIntegration(r *http.Request, o *org) (int, any, *apiError) {
	in := o.integrations[r.PathValue("integrationId")]
	if in == nil {
		return 0, nil, notFound("integration %s not found", r.PathValue("integrationId"))
	}
	return 200, o.renderIntegration(in), nil
}

// GET /api/v2/organizations/me
func (s *Sim) getOrganization(r *http.Request, o *org) (int, any, *apiError) {
	return 200, map[string]any{
		"id":                 o.id,
		"name":               o.name,
		"defaultLanguage":    "en-US",
		"defaultCountryCode": "US",
		"domain":             "gcsim",
		"version":            1,
		"state":              "active",
		"voicemailEnabled":   true,
		"productPlatform":    "GenesysCloud",
		"features":           map[string]bool{},
		"selfUri":            "/api/v2/organizations/me",
	}, nil
}

// orgLimits are the limits the simulator reports per namespace; they mirror
// what the simulator enforces.
var orgLimits = map[string]map[string]int64{
	"platform.api": {"token.rate.per.minute": DefaultRateLimitPerMinute},
	"routing":      {"max.queue.member.changes.per.request": maxQueueMemberChange, "max.page.size": maxPageSize},
	"directory":    {"max.team.member.changes.per.request": maxTeamMemberChange},
}

// GET /api/v2/organizations/limits/namespaces
func (s *Sim) listLimitNamespaces(r *http.Request, o *org) (int, any, *apiError) {
	var out []map[string]any
	for _, ns := range []string{"directory", "platform.api", "routing"} {
		out = append(out, map[string]any{"name": ns})
	}
	p, err := paginate(r, out)
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

// GET /api/v2/organizations/limits/namespaces/{namespaceName}
func (s *Sim) getLimitNamespace(r *http.Request, o *org) (int, any, *apiError) {
	ns := r.PathValue("namespaceName")
	limits, ok := orgLimits[ns]
	if !ok {
		return 0, nil, notFound("limits namespace %s not found", ns)
	}
	out := []map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(limits)) {
		v := limits[k]
		if k == "token.rate.per.minute" && s.cfg.RateLimitPerMinute > 0 {
			v = int64(s.cfg.RateLimitPerMinute)
		}
		out = append(out, map[string]any{"key": k, "namespace": ns, "value": v})
	}
	return 200, map[string]any{"entities": out}, nil
}
