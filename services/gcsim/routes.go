package gcsim

import "net/http"

// apiFunc handles one Genesys API operation while the caller's org lock is
// held; it returns the status and JSON body (nil body: no content) or an
// error rendered as ErrorBody.
type apiFunc func(r *http.Request, o *org) (int, any, *apiError)

// handle registers fn under pattern on the API mux.
func (s *Sim) handle(pattern string, fn apiFunc) {
	s.api.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		o := orgFrom(r)
		unlock := s.lockCall(r, o)
		status, body, err := fn(r, o)
		unlock()
		if err != nil {
			writeError(w, r, err)
			return
		}
		if body == nil {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, body)
	})
}

// routes registers every simulated Genesys operation. Paths and parameters
// follow pkg/apispec/genesys-openapi-subset.json.
func (s *Sim) routes() {
	mux := s.api
	mux.HandleFunc("GET /api/v2/tokens/me", s.getTokenMe)
	mux.HandleFunc("HEAD /api/v2/tokens/me", s.headTokenMe)
	mux.HandleFunc("DELETE /api/v2/tokens/me", s.deleteTokenMe)
	// An operation gcsim does not simulate is 501, never a 404 a client
	// would read as "the entity is gone".
	mux.HandleFunc("/api/v2/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errf(http.StatusNotImplemented, "not.implemented", "gcsim does not simulate %s %s", r.Method, r.URL.Path))
	})

	// Users
	s.handle("GET /api/v2/users", s.listUsers)
	s.handle("POST /api/v2/users", s.createUser)
	s.handle("POST /api/v2/users/search", s.searchUsers)
	s.handle("GET /api/v2/users/search", s.searchUsersQ64)
	s.handle("GET /api/v2/users/{userId}", s.getUser)
	s.handle("PATCH /api/v2/users/{userId}", s.patchUser)
	s.handle("DELETE /api/v2/users/{userId}", s.deleteUser)
	s.handle("POST /api/v2/users/{userId}/externalid", s.addExternalID)
	s.handle("GET /api/v2/users/{userId}/externalid", s.listExternalIDs)
	s.handle("DELETE /api/v2/users/{userId}/externalid/{authorityName}/{externalKey}", s.deleteExternalID)
	s.handle("GET /api/v2/users/externalid/{authorityName}/{externalKey}", s.getUserByExternalID)
	s.handle("GET /api/v2/users/{subjectId}/roles", s.getUserRoles)
	s.handle("GET /api/v2/users/{userId}/queues", s.listUserQueues)

	// Routing skills and languages
	s.handle("GET /api/v2/routing/skills", s.listNamed(skillKind))
	s.handle("POST /api/v2/routing/skills", s.createNamed(skillKind))
	s.handle("GET /api/v2/routing/skills/{skillId}", s.getNamed(skillKind, "skillId"))
	s.handle("DELETE /api/v2/routing/skills/{skillId}", s.deleteNamed(skillKind, "skillId"))
	s.handle("GET /api/v2/routing/languages", s.listNamed(languageKind))
	s.handle("POST /api/v2/routing/languages", s.createNamed(languageKind))
	s.handle("GET /api/v2/routing/languages/{languageId}", s.getNamed(languageKind, "languageId"))
	s.handle("DELETE /api/v2/routing/languages/{languageId}", s.deleteNamed(languageKind, "languageId"))

	us := userAssignments{s: s, k: skillKind, sub: "routingskills", aspect: "skills", idParam: "skillId", maxBulk: 100, singular: "routing skill",
		held: func(u *user) map[string]float64 { return u.skills }, render: (*org).userSkills}
	s.handle("GET /api/v2/users/{userId}/routingskills", us.list)
	s.handle("POST /api/v2/users/{userId}/routingskills", us.post)
	s.handle("PUT /api/v2/users/{userId}/routingskills/bulk", us.bulk(true))
	s.handle("PATCH /api/v2/users/{userId}/routingskills/bulk", us.bulk(false))
	s.handle("PUT /api/v2/users/{userId}/routingskills/{skillId}", us.putOne)
	s.handle("DELETE /api/v2/users/{userId}/routingskills/{skillId}", us.deleteOne(200))

	ul := userAssignments{s: s, k: languageKind, sub: "routinglanguages", aspect: "languages", idParam: "languageId", maxBulk: 100, singular: "routing language",
		held: func(u *user) map[string]float64 { return u.languages }, render: (*org).userLanguages}
	s.handle("GET /api/v2/users/{userId}/routinglanguages", ul.list)
	s.handle("POST /api/v2/users/{userId}/routinglanguages", ul.post)
	s.handle("PATCH /api/v2/users/{userId}/routinglanguages/bulk", ul.bulk(false))
	s.handle("PATCH /api/v2/users/{userId}/routinglanguages/{languageId}", ul.putOne)
	s.handle("DELETE /api/v2/users/{userId}/routinglanguages/{languageId}", ul.deleteOne(204))

	// Utilization
	s.handle("GET /api/v2/routing/utilization", s.getOrgUtilization)
	s.handle("PUT /api/v2/routing/utilization", s.putOrgUtilization)
	s.handle("DELETE /api/v2/routing/utilization", s.deleteOrgUtilization)
	s.handle("GET /api/v2/routing/users/{userId}/utilization", s.getUserUtilization)
	s.handle("PUT /api/v2/routing/users/{userId}/utilization", s.putUserUtilization)
	s.handle("DELETE /api/v2/routing/users/{userId}/utilization", s.deleteUserUtilization)

	// Queues
	s.handle("GET /api/v2/routing/queues", s.listQueues)
	s.handle("GET /api/v2/routing/queues/{queueId}/members", s.listQueueMembers)
	s.handle("POST /api/v2/routing/queues/{queueId}/members", s.postQueueMembers)
	s.handle("DELETE /api/v2/routing/queues/{queueId}/members/{memberId}", s.deleteQueueMember)

	// Teams
	s.handle("GET /api/v2/teams", s.listTeams)
	s.handle("POST /api/v2/teams", s.createTeam)
	s.handle("GET /api/v2/teams/{teamId}", s.getTeam)
	s.handle("PATCH /api/v2/teams/{teamId}", s.patchTeam)
	s.handle("DELETE /api/v2/teams/{teamId}", s.deleteTeam)
	s.handle("GET /api/v2/teams/{teamId}/members", s.listTeamMembers)
	s.handle("POST /api/v2/teams/{teamId}/members", s.addTeamMembers)
	s.handle("DELETE /api/v2/teams/{teamId}/members", s.removeTeamMembers)

	// Authorization
	s.handle("GET /api/v2/authorization/divisions", s.listDivisions)
	s.handle("GET /api/v2/authorization/divisions/home", s.homeDivision)
	s.handle("GET /api/v2/authorization/roles", s.listRoles)
	s.handle("GET /api/v2/authorization/subjects/{subjectId}", s.getSubject)
	s.handle("POST /api/v2/authorization/subjects/{subjectId}/bulkadd", s.grantsOp("add"))
	s.handle("POST /api/v2/authorization/subjects/{subjectId}/bulkremove", s.grantsOp("remove"))
	s.handle("POST /api/v2/authorization/subjects/{subjectId}/bulkreplace", s.grantsOp("replace"))
	s.handle("POST /api/v2/authorization/subjects/{subjectId}/divisions/{divisionId}/roles/{roleId}", s.singleGrant(true))
	s.handle("DELETE /api/v2/authorization/subjects/{subjectId}/divisions/{divisionId}/roles/{roleId}", s.singleGrant(false))

	// Licenses
	s.handle("GET /api/v2/license/definitions", s.listLicenseDefinitions)
	s.handle("GET /api/v2/license/definitions/{licenseId}", s.getLicenseDefinition)
	s.handle("POST /api/v2/license/organization", s.assignLicenses)
	s.handle("GET /api/v2/license/users", s.listLicenseUsers)
	s.handle("GET /api/v2/license/users/{userId}", s.getLicenseUser)
	s.handle("POST /api/v2/license/users", s.batchLicenseUsers)

	// Telephony
	s.handle("GET /api/v2/telephony/providers/edges/didpools", s.listDIDPools)
	s.handle("GET /api/v2/telephony/providers/edges/didpools/dids", s.listDIDNumbers)
	s.handle("GET /api/v2/telephony/providers/edges/didpools/{didPoolId}", s.getDIDPool)

	// Notifications (the WebSocket itself is served at /channels/{id}, see Handler)
	s.handle("GET /api/v2/notifications/availabletopics", s.availableTopics)
	s.handle("GET /api/v2/notifications/channels", s.listChannels)
	s.handle("POST /api/v2/notifications/channels", s.createChannel)
	s.handle("HEAD /api/v2/notifications/channels/{channelId}", s.headChannel)
	s.handle("GET /api/v2/notifications/channels/{channelId}/subscriptions", s.listSubscriptions)
	s.handle("POST /api/v2/notifications/channels/{channelId}/subscriptions", s.subscribe(false))
	s.handle("PUT /api/v2/notifications/channels/{channelId}/subscriptions", s.subscribe(true))
	s.handle("DELETE /api/v2/notifications/channels/{channelId}/subscriptions", s.deleteSubscriptions)

	// Integrations and organization
	s.handle("GET /api/v2/integrations", s.listIntegrations)
	s.handle("GET /api/v2/integrations/{integrationId}", s.getIntegration)
	s.handle("GET /api/v2/organizations/me", s.getOrganization)
	s.handle("GET /api/v2/organizations/limits/namespaces", s.listLimitNamespaces)
	s.handle("GET /api/v2/organizations/limits/namespaces/{namespaceName}", s.getLimitNamespace)
}
