package genesys

import (
	"context"
	"iter"
	"net/url"
	"strconv"
	"strings"
)

// maxPages bounds every listing, so a server that never stops paging cannot
// loop a client forever (100 pages × 100 entities = 10 000 entities).
const maxPages = 100

// entityPage is the common shape of Genesys' *EntityListing answers: the
// page-number fields (pageNumber, pageCount) and the cursor field (nextUri).
type entityPage[T any] struct {
	Entities   []T    `json:"entities"`
	PageNumber int    `json:"pageNumber"`
	PageSize   int    `json:"pageSize"`
	PageCount  int    `json:"pageCount"`
	Total      int64  `json:"total"`
	NextURI    string `json:"nextUri"`
}

// listByPageNumber iterates a page-number listing: pageSize (the client's,
// at most 100) and pageNumber 1, 2, … are added to base.query; it stops after
// pageCount pages, or — when the server omits pageCount — at the first short
// or empty page.
func listByPageNumber[T any](ctx context.Context, c *Client, base request) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		size := c.cfg.PageSize
		if size < 1 || size > MaxPageSize {
			yield(zero, invalidArg(base.op, "pageSize %d out of range 1..%d", size, MaxPageSize))
			return
		}
		for n := 1; n <= maxPages; n++ {
			q := cloneQuery(base.query)
			q.Set("pageSize", strconv.Itoa(size))
			q.Set("pageNumber", strconv.Itoa(n))
			var page entityPage[T]
			r := base
			r.query, r.out, r.idempotent = q, &page, true
			if err := c.do(ctx, r); err != nil {
				yield(zero, err)
				return
			}
			for _, e := range page.Entities {
				if !yield(e, nil) {
					return
				}
			}
			if page.PageCount > 0 {
				if n >= page.PageCount {
					return
				}
			} else if len(page.Entities) < size {
				return
			}
		}
	}
}

// listByCursor iterates a cursor listing (teams): the `after` value of each
// answer's nextUri is sent as the next request's `after`; it stops when
// nextUri is absent or carries no cursor.
func listByCursor[T any](ctx context.Context, c *Client, base request) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		after := ""
		for range maxPages {
			q := cloneQuery(base.query)
			q.Set("pageSize", strconv.Itoa(c.cfg.PageSize))
			if after != "" {
				q.Set("after", after)
			}
			var page entityPage[T]
			r := base
			r.query, r.out, r.idempotent = q, &page, true
			if err := c.do(ctx, r); err != nil {
				yield(zero, err)
				return
			}
			for _, e := range page.Entities {
				if !yield(e, nil) {
					return
				}
			}
			next := cursorOf(page.NextURI, "after")
			if next == "" || next == after || len(page.Entities) == 0 {
				return
			}
			after = next
		}
	}
}

// listByNextURI iterates a listing by requesting each answer's nextUri as
// given (path and query), for listings whose cursor is opaque.
func listByNextURI[T any](ctx context.Context, c *Client, base request) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		r := base
		r.query = cloneQuery(base.query)
		r.query.Set("pageSize", strconv.Itoa(c.cfg.PageSize))
		seen := map[string]bool{}
		for range maxPages {
			var page entityPage[T]
			r.out, r.idempotent = &page, true
			if err := c.do(ctx, r); err != nil {
				yield(zero, err)
				return
			}
			for _, e := range page.Entities {
				if !yield(e, nil) {
					return
				}
			}
			next, ok := relativeURI(page.NextURI)
			if !ok || seen[next] || len(page.Entities) == 0 {
				return
			}
			seen[next] = true
			r.rawURL = next
		}
	}
}

// collect drains an iterator into a slice.
func collect[T any](seq iter.Seq2[T, error]) ([]T, error) {
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

func cloneQuery(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

func cursorOf(nextURI, key string) string {
	if nextURI == "" {
		return ""
	}
	u, err := url.Parse(nextURI)
	if err != nil {
		return ""
	}
	return u.Query().Get(key)
}

// relativeURI reduces a nextUri (absolute or relative) to path+query under
// /api/v2/, refusing anything else so a server cannot redirect the client's
// token to another host.
func relativeURI(next string) (string, bool) {
	if next == "" {
		return "", false
	}
	u, err := url.Parse(next)
	if err != nil || !strings.HasPrefix(u.Path, "/api/v2/") {
		return "", false
	}
	return u.RequestURI(), true
}
