package gcsim

import (
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Faults are injected into every API request of one org.
type Faults struct {
	// ErrorRate is the probability [0,1] that a request fails before it
	// has any effect (1: every API request of the org fails).
	ErrorRate float64 `json:"errorRate"`
	// ErrorStatus is the status of those failures: 503 (default,
	// service.unavailable) or another 5xx the API answers (500, 501
	// not.implemented, 502, 504), as an ErrorBody like the API's.
	ErrorStatus int `json:"errorStatus,omitempty"`
	// ResetRate is the probability [0,1] that the connection is closed
	// without a response AFTER the request took effect (a lost response).
	ResetRate float64 `json:"resetRate"`
	// Latency is added to each request of the org.
	Latency time.Duration `json:"latency"`
}

// Stats counts API traffic of one org since the last ResetStats.
type Stats struct {
	// Requests per operation, keyed "METHOD /path/template" (the route
	// pattern, e.g. "GET /api/v2/users/{userId}"); includes POST /oauth/token.
	Requests map[string]int `json:"requests"`
	// Status counts responses per HTTP status; 0 counts connections reset by
	// fault injection.
	Status map[int]int `json:"status"`
	// RateLimited is the number of 429 responses.
	RateLimited int `json:"rateLimited"`
	// Creates counts successful creations per resource type ("user",
	// "skill", "language", "team").
	Creates map[string]int `json:"creates"`
	// NotificationsDelivered counts audit notifications written to the
	// org's WebSockets (heartbeats and pongs excluded).
	NotificationsDelivered int `json:"notificationsDelivered"`
	// CRMRequests counts fake-CRM requests per "METHOD /crm/v1/..." route
	// (kept apart from Requests: the CRM is not the Genesys API).
	CRMRequests map[string]int `json:"crmRequests"`
	// CRMRateLimited is the number of fake-CRM 429 responses.
	CRMRateLimited int `json:"crmRateLimited"`
}

// TotalRequests sums Requests.
func (st Stats) TotalRequests() int {
	n := 0
	for _, c := range st.Requests {
		n += c
	}
	return n
}

type orgStats struct {
	mu sync.Mutex
	st Stats
}

func newStats() Stats {
	return Stats{Requests: map[string]int{}, Status: map[int]int{}, Creates: map[string]int{}, CRMRequests: map[string]int{}}
}

func (s *Sim) orgStatsFor(orgID string) *orgStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	os, ok := s.stats[orgID]
	if !ok {
		os = &orgStats{st: newStats()}
		s.stats[orgID] = os
	}
	return os
}

func (s *Sim) recordRequest(orgID, op string, status int) {
	os := s.orgStatsFor(orgID)
	os.mu.Lock()
	defer os.mu.Unlock()
	os.st.Requests[op]++
	if status < 0 {
		status = 0
	}
	os.st.Status[status]++
	if status == 429 {
		os.st.RateLimited++
	}
}

// recordCreate counts a successful creation of kind in org.
func (s *Sim) recordCreate(orgID, kind string) {
	os := s.orgStatsFor(orgID)
	os.mu.Lock()
	defer os.mu.Unlock()
	os.st.Creates[kind]++
}

// Stats returns a copy of the org's counters (zero Stats for unknown orgs).
func (s *Sim) Stats(orgID string) Stats {
	os := s.orgStatsFor(orgID)
	os.mu.Lock()
	defer os.mu.Unlock()
	return Stats{
		Requests:    maps.Clone(os.st.Requests),
		Status:      maps.Clone(os.st.Status),
		RateLimited: os.st.RateLimited,
		Creates:     maps.Clone(os.st.Creates),

		NotificationsDelivered: os.st.NotificationsDelivered,
		CRMRequests:            maps.Clone(os.st.CRMRequests),
		CRMRateLimited:         os.st.CRMRateLimited,
	}
}

// recordNotification counts one audit notification written to a socket.
func (s *Sim) recordNotification(orgID string) {
	os := s.orgStatsFor(orgID)
	os.mu.Lock()
	defer os.mu.Unlock()
	os.st.NotificationsDelivered++
}

// recordCRMRequest counts one fake-CRM request and its 429s.
func (s *Sim) recordCRMRequest(orgID, op string, status int) {
	os := s.orgStatsFor(orgID)
	os.mu.Lock()
	defer os.mu.Unlock()
	os.st.CRMRequests[op]++
	if status == 429 {
		os.st.CRMRateLimited++
	}
}

// ResetStats zeroes the counters of every org.
func (s *Sim) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = map[string]*orgStats{}
}

// SetFaults sets the faults injected into orgID's requests; the zero Faults
// clears them.
func (s *Sim) SetFaults(orgID string, f Faults) error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 || f.ResetRate < 0 || f.ResetRate > 1 || f.Latency < 0 {
		return errf(400, "bad.request", "faults for org %s: rates must be within [0,1] and latency >= 0", orgID)
	}
	if _, ok := faultCodes[f.ErrorStatus]; !ok && f.ErrorStatus != 0 {
		return errf(400, "bad.request", "faults for org %s: errorStatus %d is not one of 500, 501, 502, 503, 504", orgID, f.ErrorStatus)
	}
	if s.lookupOrg(orgID) == nil {
		return notFound("org %s is not loaded", orgID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[orgID] = f
	return nil
}

// faultCodes are the ErrorBody codes the API answers with each injectable status.
var faultCodes = map[int]string{
	http.StatusInternalServerError: "internal.server.error",
	http.StatusNotImplemented:      "not.implemented",
	http.StatusBadGateway:          "bad.gateway",
	http.StatusServiceUnavailable:  "service.unavailable",
	http.StatusGatewayTimeout:      "gateway.timeout",
}

// injectedError is the error a request fails with under f.ErrorRate.
func (f Faults) injectedError() *apiError {
	status := f.ErrorStatus
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	return errf(status, faultCodes[status], "injected fault: %s", strings.ToLower(http.StatusText(status)))
}

// Faults returns the faults currently injected into orgID.
func (s *Sim) Faults(orgID string) Faults {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.faults[orgID]
}
