package gcsim

import (
	"crypto/rand"
	"crypto/sha1"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
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
	phones         map[string]*user
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
	created, activeAt, modified        time.Time
	skills                             map[string]float64          // skillId -> proficiency
	languages                          map[string]float64          // languageId -> proficiency
	utilization                        map[string]mediaUtilization // nil: org level
	teamID                             string
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
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
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

// sortedKeysBy returns the values of m sorted by the given name (case
// insensitive), then id, which is how listings are ordered.
func sortedBy[T any](m map[string]T, name func(T) string, id func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		ni, nj := strings.ToLower(name(out[i])), strings.ToLower(name(out[j]))
		if ni != nj {
			return ni < nj
		}
		return id(out[i]) < id(out[j])
	})
	return out
}

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
	for _, u := range o.users {
		if strings.EqualFold(u.email, email) {
			return u
		}
	}
	return nil
}

// phoneOwner returns the user whose PHONE address holds number, or nil.
func (o *org) phoneOwner(number string) *user { return o.phones[normalizePhone(number)] }

// setAddresses replaces u's addresses (nil: u is removed) and keeps the
// phone index current.
func (o *org) setAddresses(u *user, addrs []contact) {
	for _, a := range u.addresses {
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
}

// hasLicense reports whether u holds any license (the license gate).
func (u *user) hasLicense() bool { return len(u.licenses) > 0 }

// stateAt is the user's state at time now: inactive until activeAt.
func (u *user) stateAt(now time.Time) string {
	if now.Before(u.activeAt) {
		return "inactive"
	}
	return "active"
}

// teamMemberCount counts users in team t.
func (o *org) teamMemberCount(teamID string) int {
	n := 0
	for _, u := range o.users {
		if u.teamID == teamID {
			n++
		}
	}
	return n
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
