package provisioner

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Phone numbers never travel from the source: a user's phones are logical
// aliases (UserConfig.phones[].alias, e.g. "jane.doe@acme.example/work"),
// resolved per target by its PhonePolicy into a number the target owns:
//
//  1. the alias rule's explicit Number, or the first free number of the
//     rule's Pool (free = GET .../didpools/dids?type=UNASSIGNED, read a page
//     at a time as a plan needs numbers and handed out one by one),
//  2. then the policy's DefaultPool (no rule, or the rule's choice failed),
//  3. then the policy's Fallback: one number, or an extension.
//
// A number the API refuses (400) or that someone took meanwhile (409: the
// API enforces one owner per DID) moves on to the next candidate; a number
// owned by another user is therefore never given. A user who already has a
// phone of the alias' address type keeps it (re-runs change nothing). Every
// decision — alias, rule, candidates tried, chosen number, reason, whether
// the fallback was used — is an AUDIT event (orgsync.event.<target>.audit).

// PhonePolicy resolves a target's phone aliases. The zero value gives every
// phone the first free number of any DID pool, with no fallback.
type PhonePolicy struct {
	// Aliases are the per-alias rules.
	Aliases map[string]AliasRule `json:"aliases,omitempty" yaml:"aliases,omitempty"`
	// DefaultPool is the DID pool (exact name) of aliases without a rule and
	// of rules whose number or pool failed; "" means any pool.
	DefaultPool string `json:"defaultPool,omitempty" yaml:"defaultPool,omitempty"`
	// Fallback, used when the pools are exhausted: an E.164 number
	// ("+13175550000") or an extension ("4100").
	Fallback string `json:"fallback,omitempty" yaml:"fallback,omitempty"`
}

// AliasRule is how one alias gets its number: exactly one of Number
// (explicit, E.164) and Pool (any free number of that DID pool).
type AliasRule struct {
	Number string `json:"number,omitempty" yaml:"number,omitempty"`
	Pool   string `json:"pool,omitempty" yaml:"pool,omitempty"`
}

var (
	e164      = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	extension = regexp.MustCompile(`^[0-9]{1,10}$`)
)

// Validate reports every invalid rule of the policy.
func (p PhonePolicy) Validate() error {
	var errs []error
	for _, alias := range sortedKeys(p.Aliases) {
		r := p.Aliases[alias]
		switch {
		case strings.TrimSpace(alias) == "":
			errs = append(errs, errors.New("an alias is empty"))
		case (r.Number == "") == (r.Pool == ""):
			errs = append(errs, fmt.Errorf("alias %q: set exactly one of number and pool", alias))
		case r.Number != "" && !e164.MatchString(r.Number):
			errs = append(errs, fmt.Errorf("alias %q: number %q is not E.164 (+ and 7 to 15 digits)", alias, r.Number))
		}
	}
	if p.Fallback != "" && !e164.MatchString(p.Fallback) && !extension.MatchString(p.Fallback) {
		errs = append(errs, fmt.Errorf("fallback %q is neither an E.164 number nor an extension (1 to 10 digits)", p.Fallback))
	}
	return errors.Join(errs...)
}

// phoneSource is one step of an alias' candidate chain.
type phoneSource struct {
	kind   string // "explicit", "pool", "default-pool", "any-pool"
	number string // explicit
	pool   string // pool name ("" = any pool)
}

func (s phoneSource) String() string {
	switch s.kind {
	case "explicit":
		return "explicit number " + s.number
	case "any-pool":
		return "any DID pool"
	}
	return fmt.Sprintf("%s %q", strings.ReplaceAll(s.kind, "-", " "), s.pool)
}

// sources is the candidate chain of alias (the fallback comes after it).
func (p PhonePolicy) sources(alias string) []phoneSource {
	var out []phoneSource
	rule, ok := p.Aliases[alias]
	switch {
	case ok && rule.Number != "":
		out = append(out, phoneSource{kind: "explicit", number: rule.Number})
	case ok && rule.Pool != "":
		out = append(out, phoneSource{kind: "pool", pool: rule.Pool})
	}
	if !ok || p.DefaultPool != rule.Pool {
		if p.DefaultPool != "" {
			out = append(out, phoneSource{kind: "default-pool", pool: p.DefaultPool})
		} else if !ok {
			out = append(out, phoneSource{kind: "any-pool"})
		}
	}
	return out
}

// phoneState is one run's DID allocation state: the free numbers (listed
// on first need, once per plan), the pools by name, the numbers already
// handed out by this plan, and what this attempt assigned (so the phone
// step does not audit a number the profile step just gave as "kept").
type phoneState struct {
	mu sync.Mutex
	// free holds the pages of free numbers read so far (pagesRead of them);
	// more: the listing has further pages. Pages are read only when the
	// numbers read so far are used up: a plan needing a few numbers of a
	// 10,000-number pool costs one call, not a hundred.
	pagesRead int
	more      bool
	free      []genesys.DIDNumber
	pools     map[string]string // pool name → id; nil: not listed
	handed    map[string]bool
	mine      []string          // numbers this plan holds in the engine's didClaims
	assigned  map[string]string // user ext + "\x00" + address type → number
}

// next hands out the next free number of pool ("" = any pool), or "".
func (r *run) nextFree(ctx context.Context, u *userRun, pool string) (string, error) {
	ps := &r.phones
	ps.mu.Lock()
	defer ps.mu.Unlock()
	poolID := ""
	if pool != "" {
		if ps.pools == nil {
			var pools []genesys.DIDPool
			err := r.m.call(ctx, nil, func(ctx context.Context) (err error) {
				pools, err = r.c.ListDIDPools(ctx)
				return err
			})
			if err != nil {
				return "", fmt.Errorf("list DID pools of %s: %w", r.org, err)
			}
			ps.pools = map[string]string{}
			for _, p := range pools {
				ps.pools[p.Name] = p.ID
			}
		}
		id, ok := ps.pools[pool]
		if !ok {
			return "", failUser("DID pool %q does not exist in %s (phone policy of %s)", pool, r.org, u.d.GetEmail())
		}
		poolID = id
	}
	if ps.handed == nil {
		ps.handed = map[string]bool{}
	}
	for scanned := 0; ; {
		for _, d := range ps.free[scanned:] {
			if d.Assigned || d.Number == "" || ps.handed[d.Number] || (poolID != "" && (d.DIDPool == nil || d.DIDPool.ID != poolID)) {
				continue
			}
			ps.handed[d.Number] = true
			if !r.e.dids.hand(r.org, d.Number) {
				continue // a concurrent plan of this engine has it
			}
			ps.mine = append(ps.mine, d.Number)
			return d.Number, nil
		}
		scanned = len(ps.free)
		if ps.pagesRead > 0 && !ps.more {
			return "", nil
		}
		var dids []genesys.DIDNumber
		var more bool
		err := r.m.call(ctx, nil, func(ctx context.Context) (err error) {
			dids, more, err = r.c.ListUnassignedDIDsPage(ctx, ps.pagesRead+1)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("list free DIDs of %s (page %d): %w", r.org, ps.pagesRead+1, err)
		}
		ps.free, ps.pagesRead, ps.more = append(ps.free, dids...), ps.pagesRead+1, more
	}
}

// freeListingStale forgets the free numbers read so far (another plan or
// tool took one of them), so the next number comes from a fresh listing
// instead of the stale rest of the page. Numbers this plan handed out stay
// handed.
func (r *run) freeListingStale() {
	ps := &r.phones
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.free, ps.pagesRead, ps.more = nil, 0, false
}

// freeCount is how many numbers of the listing pool still has unhanded.
func (r *run) freeCount(pool string) int {
	ps := &r.phones
	ps.mu.Lock()
	defer ps.mu.Unlock()
	poolID := ps.pools[pool]
	n := 0
	for _, d := range ps.free {
		if !d.Assigned && !ps.handed[d.Number] && (pool == "" || (d.DIDPool != nil && d.DIDPool.ID == poolID)) {
			n++
		}
	}
	return n
}

func (r *run) markAssigned(u *userRun, typ, number string) {
	r.phones.mu.Lock()
	defer r.phones.mu.Unlock()
	if r.phones.assigned == nil {
		r.phones.assigned = map[string]string{}
	}
	r.phones.assigned[u.ext+"\x00"+typ] = number
}

func (r *run) assignedNow(u *userRun, typ string) bool {
	r.phones.mu.Lock()
	defer r.phones.mu.Unlock()
	_, ok := r.phones.assigned[u.ext+"\x00"+typ]
	return ok
}

// phoneType is the address type of a phone ("WORK" when unset).
func phoneType(p *orgsyncv1.Phone) string {
	if p.GetType() == "" {
		return "WORK"
	}
	return strings.ToUpper(p.GetType())
}

// workPhone returns the user's current phone address of type typ.
func workPhone(gu *genesys.User, typ string) (genesys.Contact, bool) {
	for _, a := range gu.Addresses {
		if a.MediaType == "PHONE" && strings.EqualFold(a.Type, typ) && (a.Address != "" || a.Extension != "") {
			return a, true
		}
	}
	return genesys.Contact{}, false
}

func contactText(c genesys.Contact) string {
	if c.Address == "" {
		return "extension " + c.Extension
	}
	return c.Address
}

// applyPhone gives each of the user's phones a number by its alias (see the
// top of this file), keeping numbers the user already has.
func (r *run) applyPhone(ctx context.Context, u *userRun) stepResult {
	if len(u.d.GetPhones()) == 0 {
		return stepResult{status: orgsyncv1.Status_STATUS_SKIPPED, msg: "the source user has no phone"}
	}
	var msgs []string
	var diffs []*orgsyncv1.FieldDiff
	changed := false
	attrs := map[string]string{}
	for _, ph := range u.d.GetPhones() {
		typ := phoneType(ph)
		if cur, ok := workPhone(u.user, typ); ok {
			if !r.assignedNow(u, typ) {
				r.auditPhone(ctx, u, ph, typ, phoneDecision{chosen: contactText(cur), status: orgsyncv1.Status_STATUS_UNCHANGED,
					reason: "kept: the user already has this " + typ + " phone (re-runs keep the number)"})
			}
			msgs = append(msgs, "keeps "+contactText(cur))
			attrs["number."+typ] = contactText(cur)
			continue
		}
		res := r.patchWithNumber(ctx, u, typ, genesys.UserPatch{}, nil)
		if res.err != nil {
			return res
		}
		changed = changed || res.status == orgsyncv1.Status_STATUS_CHANGED
		diffs = append(diffs, res.diffs...)
		msgs = append(msgs, res.msg)
		for k, v := range res.attrs {
			attrs[k] = v
		}
	}
	res := changedIf(changed, diffs, "user "+strings.Join(msgs, ", "))
	res.attrs = attrs
	return res
}

// wantsNewPhone reports whether the phone step will have to give u a number
// (it is included, pending and some phone of u has none), and of which
// address type — the profile step then assigns it with its own PATCH.
func (r *run) wantsNewPhone(u *userRun) (string, bool) {
	stepID, ok := u.steps[orgsyncv1.StepKind_STEP_KIND_PHONE]
	if !ok || len(u.d.GetPhones()) == 0 || r.dry {
		return "", false
	}
	if _, done, err := r.e.deps.Store.StepDone(r.org, r.plan.GetPlanId(), u.ext, stepID); err != nil || done {
		return "", false
	}
	for _, ph := range u.d.GetPhones() {
		if _, has := workPhone(u.user, phoneType(ph)); !has {
			return phoneType(ph), true
		}
	}
	return "", false
}

// phoneDecision is one allocation decision, as audited.
type phoneDecision struct {
	rule       string
	candidates []string // numbers tried, in order, with the answer of the refused ones
	chosen     string
	reason     string
	fallback   bool
	status     orgsyncv1.Status
}

// patchWithNumber PATCHes the user with patch plus a number for its phone
// of type typ, walking the alias' candidate chain and the fallback, and
// audits the decision. A refused or taken number moves on; running out of
// candidates without a usable fallback fails the user with the whole story.
func (r *run) patchWithNumber(ctx context.Context, u *userRun, typ string, patch genesys.UserPatch, diffs []*orgsyncv1.FieldDiff) stepResult {
	ph := u.d.GetPhones()[0]
	for _, p := range u.d.GetPhones() {
		if phoneType(p) == typ {
			ph = p
			break
		}
	}
	pol := r.e.cfg.Phones[r.org]
	dec := phoneDecision{}
	var rules []string
	for _, s := range pol.sources(ph.GetAlias()) {
		rules = append(rules, s.String())
	}
	if pol.Fallback != "" {
		rules = append(rules, "fallback "+pol.Fallback)
	}
	dec.rule = strings.Join(rules, " → ")

	const maxTries = 50 // bounds a pool whose every number is contested
	try := func(c genesys.Contact, why string) (stepResult, bool) {
		all := append(slices.Clone(diffs), &orgsyncv1.FieldDiff{Field: "addresses[PHONE/" + typ + "]", Want: contactText(c)})
		if r.dry {
			dec.chosen, dec.reason, dec.status = contactText(c), "dry run: would assign; "+why, orgsyncv1.Status_STATUS_PLANNED
			r.auditPhone(ctx, u, ph, typ, dec)
			return changedIf(true, all, "would assign "+contactText(c)), true
		}
		addrs := make([]genesys.Contact, 0, len(u.user.Addresses)+1)
		for _, a := range u.user.Addresses {
			if !(a.MediaType == "PHONE" && strings.EqualFold(a.Type, typ)) {
				addrs = append(addrs, genesys.Contact{Address: a.Address, MediaType: a.MediaType, Type: a.Type, Extension: a.Extension, CountryCode: a.CountryCode})
			}
		}
		c.MediaType, c.Type = "PHONE", typ
		addrs = append(addrs, c)
		patch.Addresses = &addrs
		var gu *genesys.User
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
			gu, err = r.c.PatchUserAtVersion(ctx, u.id, u.user.Version, patch)
			return err
		})
		if st := genesys.StatusOf(err); st == 409 || st == 400 {
			dec.candidates = append(dec.candidates, contactText(c)+" ("+strconv.Itoa(st)+")")
			if st == 409 {
				r.freeListingStale() // taken meanwhile: others are drawing from the pool too
			}
			return stepResult{}, false
		}
		if err != nil {
			return failed(fmt.Errorf("patch user with number %s: %w", contactText(c), err)), true
		}
		u.absorb(gu)
		r.markAssigned(u, typ, contactText(c))
		dec.candidates = append(dec.candidates, contactText(c))
		dec.chosen, dec.reason, dec.status = contactText(c), why, orgsyncv1.Status_STATUS_CHANGED
		r.auditPhone(ctx, u, ph, typ, dec)
		res := changedIf(true, all, "assigned "+contactText(c))
		res.attrs = map[string]string{"number." + typ: contactText(c)}
		return res, true
	}

	tries := 0
	for _, s := range pol.sources(ph.GetAlias()) {
		if s.kind == "explicit" {
			tries++
			if res, done := try(genesys.Contact{Address: s.number}, "explicit number of the alias rule"); done {
				return res
			}
			continue
		}
		for tries < maxTries {
			n, err := r.nextFree(ctx, u, s.pool)
			if err != nil {
				return failed(err)
			}
			if n == "" {
				break
			}
			tries++
			why := fmt.Sprintf("first free number of %s (%d more free)", s, r.freeCount(s.pool))
			if res, done := try(genesys.Contact{Address: n}, why); done {
				return res
			}
		}
	}
	if pol.Fallback != "" {
		dec.fallback = true
		c := genesys.Contact{Address: pol.Fallback}
		if !strings.HasPrefix(pol.Fallback, "+") {
			c = genesys.Contact{Extension: pol.Fallback}
		}
		why := fmt.Sprintf("fallback: %s had no usable number", strings.Join(rules[:len(rules)-1], " → "))
		if res, done := try(c, why); done {
			return res
		}
	}
	reason := fmt.Sprintf("no number for alias %q of %s in %s: %s exhausted", ph.GetAlias(), u.d.GetEmail(), r.org, dec.rule)
	if len(dec.candidates) > 0 {
		reason += "; refused or taken: " + strings.Join(dec.candidates, ", ")
	}
	if pol.Fallback == "" {
		reason += "; no fallback configured"
	}
	dec.reason, dec.status = reason, orgsyncv1.Status_STATUS_FAILED
	r.auditPhone(ctx, u, ph, typ, dec)
	return failed(failUser("%s", reason))
}

// auditPhone records the AUDIT event of one allocation decision. Its id is
// deterministic per plan, user, address type and status, so a redelivered
// plan does not duplicate it.
func (r *run) auditPhone(ctx context.Context, u *userRun, ph *orgsyncv1.Phone, typ string, dec phoneDecision) {
	attrs := map[string]string{
		"decision":      "phone_number",
		"alias":         ph.GetAlias(),
		"type":          typ,
		"rule":          dec.rule,
		"candidates":    strings.Join(dec.candidates, ","),
		"chosen":        dec.chosen,
		"number":        dec.chosen,
		"reason":        dec.reason,
		"fallback_used": strconv.FormatBool(dec.fallback),
		"source_number": ph.GetSourceNumber(),
		"attempts":      strconv.Itoa(len(dec.candidates)),
	}
	msg := fmt.Sprintf("%s: %s phone of %s = %s", ph.GetAlias(), typ, u.d.GetEmail(), dec.chosen)
	if dec.status == orgsyncv1.Status_STATUS_FAILED {
		msg = fmt.Sprintf("%s: no %s phone for %s", ph.GetAlias(), typ, u.d.GetEmail())
	}
	// Sent with the phase's events (finishSteps): one message per phase,
	// not a publish and ack per user.
	u.audits = append(u.audits, &orgsyncv1.Event{Status: dec.status,
		UserExternalId: u.ext, TargetUserId: u.id, Step: u.steps[orgsyncv1.StepKind_STEP_KIND_PHONE] + "/" + typ,
		Message: msg, Reason: dec.reason, Attributes: attrs})
}

// validatePhones validates a phone policy per target (Config.Validate).
func validatePhones(m map[string]PhonePolicy) error {
	var errs []error
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := m[k].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("Phones[%s]: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// didClaims are the free numbers the engine's running plans hold, per org.
// Concurrent plans of an org read the same page of free numbers; without
// this they tried the same numbers in the same order, and every number but
// one answered 409 and cost a PATCH and a fresh listing (S4: 14 % more
// PATCHes and 5× the DID listings under load). A plan releases its claims
// when it ends: by then its numbers are assigned (no listing shows them)
// or were refused.
type didClaims struct {
	mu  sync.Mutex
	set map[string]bool // org + "\x00" + number
}

// hand claims number of org; false when another plan holds it.
func (c *didClaims) hand(org, number string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := org + "\x00" + number
	if c.set[k] {
		return false
	}
	if c.set == nil {
		c.set = map[string]bool{}
	}
	c.set[k] = true
	return true
}

func (c *didClaims) release(org string, numbers []string) {
	if len(numbers) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range numbers {
		delete(c.set, org+"\x00"+n)
	}
}
