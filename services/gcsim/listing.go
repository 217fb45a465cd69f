package gcsim

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const (
	defaultPageSize = 25
	maxPageSize     = 100
)

// page is the page-number listing envelope shared by Genesys *EntityListing
// definitions.
type page[T any] struct {
	Entities    []T    `json:"entities"`
	PageSize    int    `json:"pageSize"`
	PageNumber  int    `json:"pageNumber"`
	Total       int    `json:"total"`
	PageCount   int    `json:"pageCount"`
	FirstURI    string `json:"firstUri,omitempty"`
	SelfURI     string `json:"selfUri,omitempty"`
	NextURI     string `json:"nextUri,omitempty"`
	PreviousURI string `json:"previousUri,omitempty"`
	LastURI     string `json:"lastUri,omitempty"`
}

// pageParams reads pageSize (default 25, 1..100) and pageNumber (>= 1).
func pageParams(r *http.Request) (size, number int, err *apiError) {
	size, number = defaultPageSize, 1
	q := r.URL.Query()
	if v := q.Get("pageSize"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 {
			return 0, 0, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [pageSize]. Allowable values are: 1-%d", v, maxPageSize)
		}
		if n > maxPageSize {
			return 0, 0, badRequest("pageSize %d exceeds the maximum of %d", n, maxPageSize)
		}
		size = n
	}
	if v := q.Get("pageNumber"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 {
			return 0, 0, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [pageNumber]. Allowable values are: >= 1", v)
		}
		number = n
	}
	return size, number, nil
}

// paginate cuts items into the requested page and fills the envelope,
// including first/self/next/previous/last URIs relative to the API host.
func paginate[T any](r *http.Request, items []T) (page[T], *apiError) {
	size, number, err := pageParams(r)
	if err != nil {
		return page[T]{}, err
	}
	p, lo, hi := pageWindow[T](r, size, number, len(items))
	p.Entities = append([]T{}, items[lo:hi]...)
	return p, nil
}

// pageWindow is the envelope (without entities) of page number of size
// over total items, and the page's bounds [lo, hi) in the items.
func pageWindow[T any](r *http.Request, size, number, total int) (p page[T], lo, hi int) {
	count := (total + size - 1) / size
	lo = min((number-1)*size, total)
	hi = min(lo+size, total)
	p = page[T]{
		PageSize:   size,
		PageNumber: number,
		Total:      total,
		PageCount:  count,
	}
	uri := func(n int) string {
		q := r.URL.Query()
		q.Set("pageSize", strconv.Itoa(size))
		q.Set("pageNumber", strconv.Itoa(n))
		return r.URL.Path + "?" + q.Encode()
	}
	p.SelfURI = uri(number)
	p.FirstURI = uri(1)
	if count > 0 {
		p.LastURI = uri(count)
	} else {
		p.LastURI = uri(1)
	}
	if number < count {
		p.NextURI = uri(number + 1)
	}
	if number > 1 {
		p.PreviousURI = uri(number - 1)
	}
	return p, lo, hi
}

// mapPage renders the entities of p with f; the envelope is unchanged.
// Listings page cheap records first and render only the page this way.
func mapPage[T, U any](p page[T], f func(T) U) page[U] {
	out := page[U]{Entities: make([]U, 0, len(p.Entities)), PageSize: p.PageSize, PageNumber: p.PageNumber, Total: p.Total, PageCount: p.PageCount,
		FirstURI: p.FirstURI, SelfURI: p.SelfURI, NextURI: p.NextURI, PreviousURI: p.PreviousURI, LastURI: p.LastURI}
	for _, e := range p.Entities {
		out.Entities = append(out.Entities, f(e))
	}
	return out
}

// memberPage is QueueMemberEntityListing: page-number paging whose model has
// no total, pageCount or lastUri (clients stop at the first short page).
type memberPage[T any] struct {
	Entities    []T    `json:"entities"`
	PageSize    int    `json:"pageSize"`
	PageNumber  int    `json:"pageNumber"`
	FirstURI    string `json:"firstUri,omitempty"`
	SelfURI     string `json:"selfUri,omitempty"`
	NextURI     string `json:"nextUri,omitempty"`
	PreviousURI string `json:"previousUri,omitempty"`
}

func (p page[T]) withoutCounts() memberPage[T] {
	return memberPage[T]{Entities: p.Entities, PageSize: p.PageSize, PageNumber: p.PageNumber,
		FirstURI: p.FirstURI, SelfURI: p.SelfURI, NextURI: p.NextURI, PreviousURI: p.PreviousURI}
}

// countPage is UserLicensesEntityListing: page-number paging whose model has
// counts and no URIs.
type countPage[T any] struct {
	Entities   []T `json:"entities"`
	PageSize   int `json:"pageSize"`
	PageNumber int `json:"pageNumber"`
	Total      int `json:"total"`
	PageCount  int `json:"pageCount"`
}

func (p page[T]) withoutURIs() countPage[T] {
	return countPage[T]{Entities: p.Entities, PageSize: p.PageSize, PageNumber: p.PageNumber, Total: p.Total, PageCount: p.PageCount}
}

// cursorPage is the cursor listing envelope (TeamEntityListing,
// TeamMemberEntityListing).
type cursorPage[T any] struct {
	Entities    []T    `json:"entities"`
	NextURI     string `json:"nextUri,omitempty"`
	SelfURI     string `json:"selfUri,omitempty"`
	PreviousURI string `json:"previousUri,omitempty"`
}

// cursorPaginate pages items (already sorted, with stable ids) using opaque
// `after`/`before` cursors that encode an entity id.
func cursorPaginate[T any](r *http.Request, items []T, idOf func(T) string) (cursorPage[T], *apiError) {
	q := r.URL.Query()
	size := defaultPageSize
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return cursorPage[T]{}, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [pageSize]", v)
		}
		if n > maxPageSize {
			return cursorPage[T]{}, badRequest("pageSize %d exceeds the maximum of %d", n, maxPageSize)
		}
		size = n
	}
	indexOf := func(cursor string) (int, *apiError) {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return 0, errf(400, "invalid.query.param.value", "Value [%s] is not a valid cursor", cursor)
		}
		for i, it := range items {
			if idOf(it) == string(raw) {
				return i, nil
			}
		}
		return 0, errf(400, "invalid.query.param.value", "Value [%s] is not a valid cursor", cursor)
	}
	lo, hi := 0, min(size, len(items))
	if a := q.Get("after"); a != "" {
		i, err := indexOf(a)
		if err != nil {
			return cursorPage[T]{}, err
		}
		lo = i + 1
		hi = min(lo+size, len(items))
	} else if b := q.Get("before"); b != "" {
		i, err := indexOf(b)
		if err != nil {
			return cursorPage[T]{}, err
		}
		hi = i
		lo = max(0, hi-size)
	}
	p := cursorPage[T]{Entities: append([]T{}, items[lo:hi]...), SelfURI: r.URL.RequestURI()}
	link := func(key, id string) string {
		q2 := url.Values{}
		for k, v := range q {
			if k != "after" && k != "before" {
				q2[k] = v
			}
		}
		q2.Set("pageSize", strconv.Itoa(size))
		q2.Set(key, base64.RawURLEncoding.EncodeToString([]byte(id)))
		return r.URL.Path + "?" + q2.Encode()
	}
	if hi < len(items) && hi > lo {
		p.NextURI = link("after", idOf(items[hi-1]))
	}
	if lo > 0 && hi > lo {
		p.PreviousURI = link("before", idOf(items[lo]))
	}
	return p, nil
}

// idFilter returns the set of ids from repeated or comma-separated `id`
// query parameters, or nil when absent.
func idFilter(r *http.Request, key string) map[string]bool {
	vals := r.URL.Query()[key]
	if len(vals) == 0 {
		return nil
	}
	set := map[string]bool{}
	for _, v := range vals {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				set[id] = true
			}
		}
	}
	return set
}
