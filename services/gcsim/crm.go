package gcsim

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CRM record statuses.
const (
	CRMPending     = "PENDING"
	CRMProvisioned = "PROVISIONED"
	CRMError       = "ERROR"
)

// CRMBehaviour tunes how the fake CRM treats an org's (or one record's)
// requests. The zero value is a healthy CRM with the Config.CRMDelay.
type CRMBehaviour struct {
	// Delay from an accepted PUT to the final status; 0 inherits (key →
	// org → Config.CRMDelay). Use 1ns for "immediately".
	Delay time.Duration
	// Fail makes records end in ERROR (with FailReason) instead of PROVISIONED.
	Fail       bool
	FailReason string
	// Never keeps records PENDING forever (a CRM that never answers).
	Never bool
	// RateLimitEvery answers every Nth request (counted per org, or per
	// record for a per-key behaviour) with 429 and Retry-After; 1 = all.
	RateLimitEvery int
	// RetryAfter is the Retry-After of those 429s (rounded up to whole
	// seconds, at least 1s); 0 means 1s.
	RetryAfter time.Duration
}

func (b CRMBehaviour) validate() error {
	if b.Delay < 0 || b.RateLimitEvery < 0 || b.RetryAfter < 0 {
		return fmt.Errorf("Delay, RateLimitEvery and RetryAfter must be >= 0, got %v, %d, %v", b.Delay, b.RateLimitEvery, b.RetryAfter)
	}
	return nil
}

// CRMRecord is a fake-CRM user record as GET /crm/v1/users/{key} shows it.
type CRMRecord struct {
	ExternalKey   string            `json:"externalKey"`
	Email         string            `json:"email"`
	Name          string            `json:"name,omitempty"`
	GenesysUserID string            `json:"genesysUserId,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	Status        string            `json:"status"`
	Error         string            `json:"error,omitempty"`
	UpdatedAt     string            `json:"updatedAt"`
	// Submissions counts PUTs that started a provisioning attempt (a PUT
	// repeating the stored content of a non-failed record does not).
	Submissions int `json:"-"`
}

type crmRecord struct {
	CRMRecord
	submitted time.Time // start of the current attempt
}

type crmState struct {
	mu           sync.Mutex
	records      map[string]map[string]*crmRecord // org -> externalKey -> record
	orgBehaviour map[string]CRMBehaviour
	keyBehaviour map[string]map[string]CRMBehaviour
	calls        map[string]int // rate-limit counters: org, or org+"\x00"+key
}

func newCRMState() *crmState {
	return &crmState{
		records:      map[string]map[string]*crmRecord{},
		orgBehaviour: map[string]CRMBehaviour{},
		keyBehaviour: map[string]map[string]CRMBehaviour{},
		calls:        map[string]int{},
	}
}

// SetCRMBehaviour sets the fake CRM's behaviour for every record of orgID
// that has no per-key behaviour; the zero CRMBehaviour restores a healthy
// CRM. It applies to records already pending too.
func (s *Sim) SetCRMBehaviour(orgID string, b CRMBehaviour) error {
	if err := b.validate(); err != nil {
		return fmt.Errorf("gcsim: SetCRMBehaviour(org %s): %v", orgID, err)
	}
	if s.lookupOrg(orgID) == nil {
		return fmt.Errorf("gcsim: SetCRMBehaviour: org %s is not loaded", orgID)
	}
	s.crm.mu.Lock()
	defer s.crm.mu.Unlock()
	s.crm.orgBehaviour[orgID] = b
	return nil
}

// SetCRMKeyBehaviour overrides the behaviour for one externalKey of orgID
// (replacing the org behaviour for it entirely, except that a zero Delay
// still inherits).
func (s *Sim) SetCRMKeyBehaviour(orgID, externalKey string, b CRMBehaviour) error {
	if err := b.validate(); err != nil {
		return fmt.Errorf("gcsim: SetCRMKeyBehaviour(org %s, key %q): %v", orgID, externalKey, err)
	}
	if s.lookupOrg(orgID) == nil {
		return fmt.Errorf("gcsim: SetCRMKeyBehaviour: org %s is not loaded", orgID)
	}
	s.crm.mu.Lock()
	defer s.crm.mu.Unlock()
	if s.crm.keyBehaviour[orgID] == nil {
		s.crm.keyBehaviour[orgID] = map[string]CRMBehaviour{}
	}
	s.crm.keyBehaviour[orgID][externalKey] = b
	return nil
}

// CRMRecord returns the record externalKey of orgID as of now.
func (s *Sim) CRMRecord(orgID, externalKey string) (CRMRecord, bool) {
	s.crm.mu.Lock()
	defer s.crm.mu.Unlock()
	rec := s.crm.records[orgID][externalKey]
	if rec == nil {
		return CRMRecord{}, false
	}
	s.settleLocked(orgID, rec)
	return rec.view(), true
}

// CRMRecords lists orgID's records as of now, sorted by externalKey.
func (s *Sim) CRMRecords(orgID string) []CRMRecord {
	s.crm.mu.Lock()
	defer s.crm.mu.Unlock()
	out := []CRMRecord{}
	for _, rec := range s.crm.records[orgID] {
		s.settleLocked(orgID, rec)
		out = append(out, rec.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ExternalKey < out[j].ExternalKey })
	return out
}

func (r *crmRecord) view() CRMRecord {
	v := r.CRMRecord
	v.Attributes = maps.Clone(r.Attributes)
	return v
}

// behaviourLocked is the behaviour for key in orgID, with the delay
// resolved; counter names its rate-limit counter.
func (s *Sim) behaviourLocked(orgID, key string) (b CRMBehaviour, counter string) {
	ob := s.crm.orgBehaviour[orgID]
	b, counter = ob, orgID
	if kb, ok := s.crm.keyBehaviour[orgID][key]; ok {
		b, counter = kb, orgID+"\x00"+key
		if b.Delay == 0 {
			b.Delay = ob.Delay
		}
	}
	if b.Delay == 0 {
		b.Delay = s.cfg.CRMDelay
	}
	return b, counter
}

// settleLocked moves a PENDING record to its final status once its delay
// has passed on the sim's clock; the transition is dated at the deadline.
func (s *Sim) settleLocked(orgID string, rec *crmRecord) {
	if rec.Status != CRMPending {
		return
	}
	b, _ := s.behaviourLocked(orgID, rec.ExternalKey)
	done := rec.submitted.Add(b.Delay)
	if b.Never || s.now().Before(done) {
		return
	}
	rec.Status, rec.UpdatedAt = CRMProvisioned, fmtTime(done)
	if b.Fail {
		rec.Status, rec.Error = CRMError, b.FailReason
		if rec.Error == "" {
			rec.Error = "CRM rejected the user record (simulated failure)"
		}
	}
}

// crmError is the fake CRM's error body (not the Genesys ErrorBody: the CRM
// is another vendor's API).
type crmError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// crmRoutes mounts the fake CRM (see README "Fake CRM"):
//
//	PUT /crm/v1/users/{externalKey}  upsert → 202 {externalKey, status, updatedAt}
//	GET /crm/v1/users/{externalKey}  → 200 CRMRecord, 404 unknown
func (s *Sim) crmRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /crm/v1/users/{externalKey}", s.crmHandler("PUT /crm/v1/users/{externalKey}", s.crmPutUser))
	mux.HandleFunc("GET /crm/v1/users/{externalKey}", s.crmHandler("GET /crm/v1/users/{externalKey}", s.crmGetUser))
	mux.HandleFunc("/crm/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, crmError{"not_found", fmt.Sprintf("no CRM operation %s %s", r.Method, r.URL.Path)})
	})
}

// crmOrg resolves the org whose crmApiKey is key (nil if none).
func (s *Sim) crmOrg(key string) *org {
	if key == "" {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, o := range s.orgs {
		if o.crmKey != "" && subtle.ConstantTimeCompare([]byte(o.crmKey), []byte(key)) == 1 {
			return o
		}
	}
	return nil
}

type crmFunc func(r *http.Request, orgID, key string) (int, any)

// crmHandler authenticates (X-CRM-Key → org; 401 otherwise), applies the
// behaviour's rate limit, runs fn and counts the request in Stats.
func (s *Sim) crmHandler(op string, fn crmFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o := s.crmOrg(r.Header.Get("X-CRM-Key"))
		if o == nil {
			writeJSON(w, http.StatusUnauthorized, crmError{"unauthorized", "missing or invalid X-CRM-Key header"})
			return
		}
		key := r.PathValue("externalKey")
		status, body := func() (int, any) {
			s.crm.mu.Lock()
			b, counter := s.behaviourLocked(o.id, key)
			s.crm.calls[counter]++
			n := s.crm.calls[counter]
			s.crm.mu.Unlock()
			if b.RateLimitEvery > 0 && n%b.RateLimitEvery == 0 {
				retry := b.RetryAfter
				if retry <= 0 {
					retry = time.Second
				}
				secs := max(1, int((retry+time.Second-1)/time.Second))
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				return http.StatusTooManyRequests, crmError{"rate_limited", fmt.Sprintf("too many requests; retry in %d seconds", secs)}
			}
			return fn(r, o.id, key)
		}()
		s.recordCRMRequest(o.id, op, status)
		writeJSON(w, status, body)
	}
}

// PUT /crm/v1/users/{externalKey}: upsert. A new record, changed content,
// or a record in ERROR starts a new attempt (PENDING, the delay restarts);
// repeating the stored content of a PENDING or PROVISIONED record changes
// nothing, so retries are idempotent.
func (s *Sim) crmPutUser(r *http.Request, orgID, key string) (int, any) {
	if strings.TrimSpace(key) == "" {
		return http.StatusBadRequest, crmError{"invalid_request", "externalKey is required"}
	}
	var in struct {
		Email         string            `json:"email"`
		Name          string            `json:"name"`
		GenesysUserID string            `json:"genesysUserId"`
		Attributes    map[string]string `json:"attributes"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return http.StatusBadRequest, crmError{"invalid_request", fmt.Sprintf("user %q: invalid JSON body: %v", key, err)}
	}
	if !strings.Contains(in.Email, "@") {
		return http.StatusBadRequest, crmError{"invalid_request", fmt.Sprintf("user %q: email is required and must contain @", key)}
	}
	now := s.now()
	s.crm.mu.Lock()
	defer s.crm.mu.Unlock()
	recs := s.crm.records[orgID]
	if recs == nil {
		recs = map[string]*crmRecord{}
		s.crm.records[orgID] = recs
	}
	rec := recs[key]
	if rec != nil {
		s.settleLocked(orgID, rec)
		same := rec.Email == in.Email && rec.Name == in.Name && rec.GenesysUserID == in.GenesysUserID &&
			maps.Equal(rec.Attributes, in.Attributes)
		if same && rec.Status != CRMError {
			return http.StatusAccepted, map[string]any{"externalKey": key, "status": rec.Status, "updatedAt": rec.UpdatedAt}
		}
	} else {
		rec = &crmRecord{}
		recs[key] = rec
	}
	rec.CRMRecord = CRMRecord{
		ExternalKey: key, Email: in.Email, Name: in.Name, GenesysUserID: in.GenesysUserID,
		Attributes: maps.Clone(in.Attributes), Status: CRMPending, UpdatedAt: fmtTime(now),
		Submissions: rec.Submissions + 1,
	}
	rec.submitted = now
	return http.StatusAccepted, map[string]any{"externalKey": key, "status": CRMPending, "updatedAt": rec.UpdatedAt}
}

// GET /crm/v1/users/{externalKey}
func (s *Sim) crmGetUser(r *http.Request, orgID, key string) (int, any) {
	s.crm.mu.Lock()
	defer s.crm.mu.Unlock()
	rec := s.crm.records[orgID][key]
	if rec == nil {
		return http.StatusNotFound, crmError{"not_found", fmt.Sprintf("no CRM user with externalKey %q", key)}
	}
	s.settleLocked(orgID, rec)
	return http.StatusOK, rec.view()
}

// crmAdminRoutes mounts the fake CRM's and the notifications' admin
// endpoints (unauthenticated, not counted, like the rest of /_sim/):
//
//	GET  /_sim/orgs/{orgId}/crm                 CRMRecords
//	PUT  /_sim/orgs/{orgId}/crm/behaviour       SetCRMBehaviour; durations as Go strings ("5s")
//	POST /_sim/orgs/{orgId}/websockets/drop     DropWebSockets → {"dropped": n}
func (s *Sim) crmAdminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/orgs/{orgId}/crm", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"records": s.CRMRecords(r.PathValue("orgId"))})
	})
	mux.HandleFunc("PUT /_sim/orgs/{orgId}/crm/behaviour", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Delay          string `json:"delay"`
			Fail           bool   `json:"fail"`
			FailReason     string `json:"failReason"`
			Never          bool   `json:"never"`
			RateLimitEvery int    `json:"rateLimitEvery"`
			RetryAfter     string `json:"retryAfter"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			writeError(w, r, errf(400, "sim.admin", "decode CRM behaviour: %v", err))
			return
		}
		b := CRMBehaviour{Fail: in.Fail, FailReason: in.FailReason, Never: in.Never, RateLimitEvery: in.RateLimitEvery}
		for _, d := range []struct {
			name, v string
			dst     *time.Duration
		}{{"delay", in.Delay, &b.Delay}, {"retryAfter", in.RetryAfter, &b.RetryAfter}} {
			if d.v == "" {
				continue
			}
			v, err := time.ParseDuration(d.v)
			if err != nil {
				writeError(w, r, errf(400, "sim.admin", "CRM behaviour %s: %v", d.name, err))
				return
			}
			*d.dst = v
		}
		if err := s.SetCRMBehaviour(r.PathValue("orgId"), b); err != nil {
			writeError(w, r, errf(400, "sim.admin", "%v", err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/orgs/{orgId}/websockets/drop", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"dropped": s.DropWebSockets(r.PathValue("orgId"))})
	})
}
