package gcsim

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// org is the complete in-memory state of one simulated organization.
// Every field is guarded by mu; handlers hold it for the whole operation so
// each API call is atomic with respect to others on the same org.
type org struct {
	mu sync.Mutex

	id, name string
	clients  map[string]string // clientId -> clientSecret
	crmKey   string            // fake-CRM API key; "" = CRM disabled; immutable

	homeDivisionID string
	divisions      map[string]*division
	roles          map[string]*role
	licenses       map[string]*licenseDef
	users          map[string]*user
	// phones: the user holding each normalized PHONE address (setAddresses
	// keeps it), so DID listings and conflict checks need no scan.
	phones map[string]*user
	// emails: users by foldKey(email), so the email conflict checks of
	// POST and PATCH /users need no scan. A slice: fixture emails are
	// unique by strings.ToLower, which lets two be EqualFold-equal (ſ, s).
	emails map[string][]*user
	// extIDs: the user holding each external id (ids are unique per org).
	extIDs map[externalID]*user
	// dids: every number of every DID pool, sorted, with its owner (kept
	// equal to phones by setAddresses); pools are fixed once loaded.
	// didsAssigned counts the entries with an owner.
	dids           []didEntry
	didByNumber    map[string]*didEntry
	didsAssigned   int
	skills         map[string]*namedEntity
	languages      map[string]*namedEntity
	teams          map[string]*team
	queues         map[string]*queue
	didPools       map[string]*didPool
	integrations   map[string]*integration
	orgUtilization map[string]mediaUtilization

	// pending collects user-change events raised while mu is held; they are
	// delivered to listeners after unlock so listeners may call back in.
	pending []UserChange
}

type division struct {
	id, name, description string
}

type role struct {
	id, name, description string
	permissions           []string
}

type licenseDef struct {
	id, description string
}

// namedEntity is a routing skill or language.
type namedEntity struct {
	id, name string
	created  time.Time
	modified time.Time
	version  int
}

type team struct {
	id, name, description, divisionID string
	created, modified                 time.Time
	members                           map[string]bool // userId set (setTeam keeps it)
}

type queue struct {
	id, name, description, divisionID string
	created                           time.Time
	members                           map[string]bool // userId set
}

type didPool struct {
	id, name, description string
	start, end            string
	numbers               []string
}

// didEntry is one number of a DID pool and the user holding it (nil: free).
type didEntry struct {
	pool  *didPool
	num   string
	owner *user
	id    string // stableID of the number, computed when first listed
}

type integration struct {
	id, name, typeID, reportedState string
	created                         time.Time
}

type contact struct {
	Address     string `json:"address,omitempty"`
	Display     string `json:"display,omitempty"`
	MediaType   string `json:"mediaType,omitempty"`
	Type        string `json:"type,omitempty"`
	Extension   string `json:"extension,omitempty"`
	CountryCode string `json:"countryCode,omitempty"`
}

type grant struct {
	roleID, divisionID string
	madeAt             time.Time
}

type externalID struct {
	AuthorityName string `json:"authorityName"`
	ExternalKey   string `json:"externalKey"`
}

// mediaUtilization is the Genesys MediaUtilization shape.
type mediaUtilization struct {
	MaximumCapacity         int      `json:"maximumCapacity"`
	InterruptableMediaTypes []string `json:"interruptableMediaTypes"`
	IncludeNonAcd           bool     `json:"includeNonAcd"`
}

type user struct {
	id, name, email, title, department string
	divisionID, managerID              string
	version                            int
	addresses                          []contact
	created, activeAt                  time.Time
	skills                             map[string]float64          // skillId -> proficiency
	languages                          map[string]float64          // languageId -> proficiency
	utilization                        map[string]mediaUtilization // nil: org level
	teamID                             string
	deactivated                        bool // PATCH state inactive
	grants                             []grant
	licenses                           map[string]bool
	externalIDs                        []externalID
}

func newOrg(id, name string) *org {
	return &org{
		id: id, name: name,
		clients:        map[string]string{},
		divisions:      map[string]*division{},
		roles:          map[string]*role{},
		licenses:       map[string]*licenseDef{},
		users:          map[string]*user{},
		phones:         map[string]*user{},
		emails:         map[string][]*user{},
		extIDs:         map[externalID]*user{},
		didByNumber:    map[string]*didEntry{},
		skills:         map[string]*namedEntity{},
		languages:      map[string]*namedEntity{},
		teams:          map[string]*team{},
		queues:         map[string]*queue{},
		didPools:       map[string]*didPool{},
		integrations:   map[string]*integration{},
		orgUtilization: defaultUtilization(),
	}
}

// defaultUtilization is the out-of-the-box organization utilization.
func defaultUtilization() map[string]mediaUtilization {
	return map[string]mediaUtilization{
		"call":     {MaximumCapacity: 1, InterruptableMediaTypes: []string{}},
		"callback": {MaximumCapacity: 1, InterruptableMediaTypes: []string{}},
		"chat":     {MaximumCapacity: 4, InterruptableMediaTypes: []string{}},
		"email":    {MaximumCapacity: 1, InterruptableMediaTypes: []string{}},
		"message":  {MaximumCapacity: 4, InterruptableMediaTypes: []string{}},
	}
}

func cloneUtilization(u map[string]mediaUtilization) map[string]mediaUtilization {
	if u == nil {
		return nil
	}
	out := make(map[string]mediaUtilization, len(u))
	for k, v := range u {
		v.InterruptableMediaTypes = append([]string{}, v.InterruptableMediaTypes...)
		out[k] = v
	}
	return out
}

// newID returns a random RFC 4122 version-4 UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// stableID derives a deterministic UUID (version-5 style, SHA-1) from parts,
// so fixture objects without explicit ids keep the same id across reloads.
func stableID(parts ...string) string {
	h := sha1.Sum([]byte(strings.Join(parts, "\x00")))
	var b [16]byte
	copy(b[:], h[:16])
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	// hex.Encode, not fmt: ids are made for every request and listed DID.
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	hex.Encode(out[9:13], b[4:6])
	hex.Encode(out[14:18], b[6:8])
	hex.Encode(out[19:23], b[8:10])
	hex.Encode(out[24:36], b[10:16])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return string(out[:])
}

// isUUID reports whether s looks like a canonical UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// sortedBy returns the values of m sorted by the given name (case
// insensitive), then id, which is how listings are ordered.
func sortedBy[T any](m map[string]T, name func(T) string, id func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sortByName(out, name, id)
	return out
}

// sortByName sorts items in listing order: name case-insensitively, then
// id. Each name is lower-cased once, not once per comparison.
func sortByName[T any](items []T, name func(T) string, id func(T) string) {
	type keyed struct {
		name, id string
		v        T
	}
	ks := make([]keyed, len(items))
	for i, v := range items {
		ks[i] = keyed{strings.ToLower(name(v)), id(v), v}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	for i, k := range ks {
		items[i] = k.v
	}
}

// listedBefore reports whether user a comes before b in listing order.
func listedBefore(a, b *user) bool {
	if c := strings.Compare(strings.ToLower(a.name), strings.ToLower(b.name)); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

func userName(u *user) string { return u.name }
func userID(u *user) string   { return u.id }

// hasPrefixFold is the Genesys name filter: case-insensitive prefix match.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// normalizePhone reduces a phone number to "+digits" for ownership checks.
func normalizePhone(s string) string {
	if isE164(s) {
		return s // the common case: nothing to strip, nothing to allocate
	}
	var b strings.Builder
	for i, c := range s {
		if c >= '0' && c <= '9' || (c == '+' && i == 0) {
			b.WriteRune(c)
		}
	}
	out := b.String()
	if out != "" && out[0] != '+' {
		out = "+" + out
	}
	return out
}

// isE164 reports whether s is "+" followed by digits only.
func isE164(s string) bool {
	if len(s) < 2 || s[0] != '+' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// findUserByEmail returns the user with that email (case-insensitive).
func (o *org) findUserByEmail(email string) *user {
	if us := o.emails[foldKey(email)]; len(us) > 0 {
		return us[0]
	}
	return nil
}

// indexEmail adds u to (add) or removes it from the email index.
func (o *org) indexEmail(u *user, add bool) {
	k := foldKey(u.email)
	if add {
		o.emails[k] = append(o.emails[k], u)
		return
	}
	if us := slices.DeleteFunc(o.emails[k], func(x *user) bool { return x == u }); len(us) > 0 {
		o.emails[k] = us
	} else {
		delete(o.emails, k)
	}
}

// foldKey maps s so that foldKey(a) == foldKey(b) exactly when
// strings.EqualFold(a, b): each rune becomes the smallest rune of its case
// folding orbit (invalid UTF-8 decodes to RuneError, as in EqualFold).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// The smallest rune of an ASCII letter's orbit is its upper case
		// (k's orbit holds the Kelvin sign, s's the long s: both larger).
		return strings.ToUpper(s)
	}
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// phoneOwner returns the user whose PHONE address holds number, or nil.
func (o *org) phoneOwner(number string) *user { return o.phones[normalizePhone(number)] }

// setAddresses replaces u's addresses (nil: u is removed) and keeps the
// phone index and the DID owners current.
func (o *org) setAddresses(u *user, addrs []contact) {
	old := u.addresses
	for _, a := range old {
		if n := normalizePhone(a.Address); a.MediaType == "PHONE" && o.phones[n] == u {
			delete(o.phones, n)
		}
	}
	u.addresses = addrs
	for _, a := range addrs {
		if a.MediaType == "PHONE" {
			o.phones[normalizePhone(a.Address)] = u
		}
	}
	for _, list := range [][]contact{old, addrs} {
		for _, a := range list {
			if a.MediaType != "PHONE" {
				continue
			}
			n := normalizePhone(a.Address)
			if d := o.didByNumber[n]; d != nil {
				owner := o.phones[n]
				switch {
				case d.owner == nil && owner != nil:
					o.didsAssigned++
				case d.owner != nil && owner == nil:
					o.didsAssigned--
				}
				d.owner = owner
			}
		}
	}
}

// indexDIDs builds the sorted DID list of o's pools; before any user.
func (o *org) indexDIDs() {
	o.dids, o.didByNumber, o.didsAssigned = nil, map[string]*didEntry{}, 0
	for _, p := range o.didPools {
		for _, n := range p.numbers {
			o.dids = append(o.dids, didEntry{pool: p, num: n})
		}
	}
	slices.SortFunc(o.dids, func(a, b didEntry) int { return strings.Compare(a.num, b.num) })
	for i := range o.dids {
		o.didByNumber[o.dids[i].num] = &o.dids[i]
	}
}

// setTeam moves u to team teamID ("" = no team), keeping team members.
func (o *org) setTeam(u *user, teamID string) {
	if t := o.teams[u.teamID]; t != nil {
		delete(t.members, u.id)
	}
	u.teamID = teamID
	if t := o.teams[teamID]; t != nil {
		t.members[u.id] = true
	}
}

// indexExternalIDs adds u's external ids to the index, or removes those
// u holds from it.
func (o *org) indexExternalIDs(u *user, add bool) {
	for _, e := range u.externalIDs {
		if add {
			o.extIDs[e] = u
		} else if o.extIDs[e] == u {
			delete(o.extIDs, e)
		}
	}
}

// hasLicense reports whether u holds any license (the license gate).
func (u *user) hasLicense() bool { return len(u.licenses) > 0 }

// stateAt is the user's state at time now: inactive until activeAt, and
// after a PATCH to state inactive until one to active.
func (u *user) stateAt(now time.Time) string {
	if u.deactivated || now.Before(u.activeAt) {
		return "inactive"
	}
	return "active"
}

// findByNameFold returns the entity in m whose name equals name case-insensitively.
func findByNameFold[T any](m map[string]T, name string, nameOf func(T) string) (T, bool) {
	for _, v := range m {
		if strings.EqualFold(nameOf(v), name) {
			return v, true
		}
	}
	var zero T
	return zero, false
}
