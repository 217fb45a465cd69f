package extractor

import (
	"context"
	"fmt"
	"sync"

	"github.com/orgsync/orgsync/pkg/genesys"
)

// entry is one named object of an org listing.
type entry struct {
	name        string
	description string
}

// catalog resolves ids of one org to names with org-wide listings: each kind
// is listed at most once per catalog (one catalog per snapshot), however many
// users reference it, instead of one GET per id. Listings are loaded lazily,
// so a snapshot that needs no queue never lists queues.
type catalog struct {
	c *genesys.Client

	mu    sync.Mutex
	kinds map[string]map[string]entry // kind → id → entry
}

func newCatalog(c *genesys.Client) *catalog {
	return &catalog{c: c, kinds: map[string]map[string]entry{}}
}

// Kinds of the catalog, also used in error messages.
const (
	kindSkill    = "skill"
	kindLanguage = "language"
	kindDivision = "division"
	kindRole     = "role"
	kindQueue    = "queue"
	kindTeam     = "team"
	kindLicense  = "license definition"
)

func (k *catalog) load(ctx context.Context, kind string) (map[string]entry, error) {
	out := map[string]entry{}
	switch kind {
	case kindSkill:
		all, err := k.c.ListSkills(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, s := range all {
			out[s.ID] = entry{name: s.Name}
		}
	case kindLanguage:
		all, err := k.c.ListLanguages(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, l := range all {
			out[l.ID] = entry{name: l.Name}
		}
	case kindDivision:
		all, err := k.c.ListDivisions(ctx)
		if err != nil {
			return nil, err
		}
		for _, d := range all {
			out[d.ID] = entry{name: d.Name, description: d.Description}
		}
	case kindRole:
		all, err := k.c.ListRoles(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, r := range all {
			out[r.ID] = entry{name: r.Name, description: r.Description}
		}
	case kindQueue:
		all, err := k.c.ListQueues(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, q := range all {
			out[q.ID] = entry{name: q.Name}
		}
	case kindTeam:
		all, err := k.c.ListTeams(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, t := range all {
			out[t.ID] = entry{name: t.Name, description: t.Description}
		}
	case kindLicense:
		all, err := k.c.ListLicenseDefinitions(ctx)
		if err != nil {
			return nil, err
		}
		for _, l := range all {
			// A license definition's id ("cx2") is its name across orgs.
			out[l.ID] = entry{name: l.ID, description: l.Description}
		}
	default:
		return nil, fmt.Errorf("extractor: catalog: unknown kind %q", kind)
	}
	return out, nil
}

// lookup resolves the id of a kind to its entry. An id missing from the
// org's listing is an error (transient: the listing may lag a create).
func (k *catalog) lookup(ctx context.Context, kind, id string) (entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.kinds[kind]
	if !ok {
		var err error
		if m, err = k.load(ctx, kind); err != nil {
			return entry{}, fmt.Errorf("extractor: list %ss of the source org: %w", kind, err)
		}
		k.kinds[kind] = m
	}
	e, ok := m[id]
	if !ok {
		return entry{}, fmt.Errorf("extractor: %s %s is referenced but not in the source org's %s listing (%d entries)", kind, id, kind, len(m))
	}
	return e, nil
}
