package genesys

import (
	"context"
	"iter"
	"strings"
)

// named is a resource whose name is its unique key within an org (skills,
// languages, teams, queues, roles, divisions).
type named interface{ entityName() string }

// findExact returns the entity of seq whose name equals name exactly. Genesys'
// `name` query filters are prefix (or fuzzy) matches, so every lookup by name
// lists with the filter and then compares exactly. Exact match is case
// sensitive first; a case-insensitive match is accepted when it is the only one
// (Genesys treats skill names case-insensitively for uniqueness).
func findExact[T named](seq iter.Seq2[T, error], name string) (T, bool, error) {
	var zero, folded T
	nFolded := 0
	for e, err := range seq {
		if err != nil {
			return zero, false, err
		}
		if e.entityName() == name {
			return e, true, nil
		}
		if strings.EqualFold(e.entityName(), name) {
			folded = e
			nFolded++
		}
	}
	if nFolded == 1 {
		return folded, true, nil
	}
	return zero, false, nil
}

// createOnce runs a non-idempotent create so that a lost answer never
// duplicates the object: when the request may have reached the server but no
// answer came back (transport error after writing, 5xx), find is asked
// whether the object exists now; if it does, it is the result (*out is set)
// and nothing is re-posted, otherwise the create is retried.
func createOnce[T any](ctx context.Context, c *Client, r request, out *T, find func(context.Context) (T, bool, error)) error {
	r.out, r.idempotent = out, false
	r.lookup = func(ctx context.Context) (bool, error) {
		v, found, err := find(ctx)
		if err != nil || !found {
			return false, err
		}
		*out = v
		return true, nil
	}
	return c.do(ctx, r)
}
