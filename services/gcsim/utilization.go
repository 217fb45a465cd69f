package gcsim

import (
	"net/http"
	"slices"
	"sort"
)

// mediaTypes are the media keys accepted in UtilizationRequest.utilization.
var mediaTypes = []string{"call", "callback", "chat", "email", "message", "workitem"}

type utilizationBody struct {
	Utilization       map[string]mediaUtilization `json:"utilization"`
	LabelUtilizations map[string]any              `json:"labelUtilizations"`
}

func decodeUtilization(r *http.Request) (map[string]mediaUtilization, *apiError) {
	var b utilizationBody
	if err := decodeBody(r, &b); err != nil {
		return nil, err
	}
	if len(b.Utilization) == 0 {
		return nil, badRequest("UtilizationRequest.utilization must name at least one media type")
	}
	keys := make([]string, 0, len(b.Utilization))
	for k := range b.Utilization {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := b.Utilization[k]
		if !slices.Contains(mediaTypes, k) {
			return nil, badRequest("utilization.%s: unknown media type (allowed: %v)", k, mediaTypes)
		}
		if v.MaximumCapacity < 0 || v.MaximumCapacity > 25 {
			return nil, badRequest("utilization.%s.maximumCapacity %d must be within 0..25", k, v.MaximumCapacity)
		}
		for _, im := range v.InterruptableMediaTypes {
			if !slices.Contains(mediaTypes, im) {
				return nil, badRequest("utilization.%s.interruptableMediaTypes: unknown media type %q", k, im)
			}
		}
		if v.InterruptableMediaTypes == nil {
			v.InterruptableMediaTypes = []string{}
		}
		b.Utilization[k] = v
	}
	return b.Utilization, nil
}

func renderUtilization(u map[string]mediaUtilization, level string) map[string]any {
	m := map[string]any{"utilization": cloneUtilization(u), "labelUtilizations": map[string]any{}}
	if level != "" {
		m["level"] = level
	}
	return m
}

// GET /api/v2/routing/utilization
func (s *Sim) getOrgUtilization(r *http.Request, o *org) (int, any, *apiError) {
	return 200, renderUtilization(o.orgUtilization, ""), nil
}

// PUT /api/v2/routing/utilization
func (s *Sim) putOrgUtilization(r *http.Request, o *org) (int, any, *apiError) {
	u, err := decodeUtilization(r)
	if err != nil {
		return 0, nil, err
	}
	o.orgUtilization = u
	return 200, renderUtilization(o.orgUtilization, ""), nil
}

// DELETE /api/v2/routing/utilization restores the platform defaults.
func (s *Sim) deleteOrgUtilization(r *http.Request, o *org) (int, any, *apiError) {
	o.orgUtilization = defaultUtilization()
	return 200, nil, nil
}

// GET /api/v2/routing/users/{userId}/utilization: level "Agent" when the
// user has its own settings, else the org's with level "Organization".
func (s *Sim) getUserUtilization(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	if u.utilization != nil {
		return 200, renderUtilization(u.utilization, "Agent"), nil
	}
	return 200, renderUtilization(o.orgUtilization, "Organization"), nil
}

// PUT /api/v2/routing/users/{userId}/utilization (license gated).
func (s *Sim) putUserUtilization(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	util, err := decodeUtilization(r)
	if err != nil {
		return 0, nil, err
	}
	if err := requireLicense(u, "agent utilization"); err != nil {
		return 0, nil, err
	}
	u.utilization = util
	s.userChanged(o, u.id, "utilization")
	return 200, renderUtilization(u.utilization, "Agent"), nil
}

// DELETE /api/v2/routing/users/{userId}/utilization reverts to org level.
func (s *Sim) deleteUserUtilization(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	if u.utilization != nil {
		u.utilization = nil
		s.userChanged(o, u.id, "utilization")
	}
	return 200, nil, nil
}
