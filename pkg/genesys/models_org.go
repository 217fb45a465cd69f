package genesys

// LicenseDefinition is the spec's LicenseDefinition.
type LicenseDefinition struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
}

// LicenseAssignment is the spec's LicenseAssignmentRequest.
type LicenseAssignment struct {
	LicenseID     string   `json:"licenseId"`
	UserIDsAdd    []string `json:"userIdsAdd"`
	UserIDsRemove []string `json:"userIdsRemove"`
}

// LicenseUpdateStatus is one result of a batch assignment.
type LicenseUpdateStatus struct {
	UserID    string `json:"userId"`
	LicenseID string `json:"licenseId"`
	Result    string `json:"result"`
}

// LicenseUser is the spec's LicenseUser: a user's licenses.
type LicenseUser struct {
	ID       string              `json:"id"`
	Licenses []LicenseDefinition `json:"licenses"`
}

// AuthzDivision is the spec's AuthzDivision.
type AuthzDivision struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
	HomeDivision bool   `json:"homeDivision,omitempty"`
}

func (d AuthzDivision) entityName() string { return d.Name }

// Role is the spec's DomainOrganizationRole.
type Role struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
}

func (r Role) entityName() string { return r.Name }

// AuthzSubject is the spec's AuthzSubject: a user's role grants.
type AuthzSubject struct {
	ID     string       `json:"id"`
	Name   string       `json:"name,omitempty"`
	Grants []AuthzGrant `json:"grants"`
}

// AuthzGrant is one role granted in one division.
type AuthzGrant struct {
	SubjectID string `json:"subjectId,omitempty"`
	Division  struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	} `json:"division"`
	Role struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	} `json:"role"`
}

// RoleDivision is the spec's RoleDivisionPair.
type RoleDivision struct {
	RoleID     string `json:"roleId"`
	DivisionID string `json:"divisionId"`
}

// DIDPool is the spec's DIDPool.
type DIDPool struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	StartPhoneNumber string `json:"startPhoneNumber"`
	EndPhoneNumber   string `json:"endPhoneNumber"`
	State            string `json:"state,omitempty"`
}

// DIDNumber is the spec's DIDNumber.
type DIDNumber struct {
	ID       string `json:"id"`
	Number   string `json:"number"`
	Assigned bool   `json:"assigned"`
	DIDPool  *struct {
		ID string `json:"id"`
	} `json:"didPool,omitempty"`
	OwnerType string `json:"ownerType,omitempty"`
}

// Integration is the subset of the spec's Integration the health check reads.
type Integration struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	IntendedState   string `json:"intendedState"`
	IntegrationType *struct {
		ID string `json:"id"`
	} `json:"integrationType,omitempty"`
	ReportedState *struct {
		Code      string `json:"code"` // ACTIVE, ACTIVATING, INACTIVE, DEACTIVATING, ERROR
		Effective string `json:"effective,omitempty"`
	} `json:"reportedState,omitempty"`
}

// Channel is a notifications channel (spec Channel): its ConnectURI is the
// WebSocket to read events from.
type Channel struct {
	ID         string `json:"id"`
	ConnectURI string `json:"connectUri,omitempty"`
	Expires    string `json:"expires,omitempty"`
}

// ChannelTopic is a subscription of a channel (spec ChannelTopic).
type ChannelTopic struct {
	ID              string `json:"id"`
	State           string `json:"state,omitempty"` // Permitted, Rejected (responses)
	RejectionReason string `json:"rejectionReason,omitempty"`
}

// Organization is the spec's Organization.
type Organization struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Domain          string `json:"domain,omitempty"`
	State           string `json:"state,omitempty"`
	Version         int    `json:"version"`
	ProductPlatform string `json:"productPlatform,omitempty"`
}

// LimitNamespace is one entry of GET /api/v2/organizations/limits/namespaces.
type LimitNamespace struct {
	Name string `json:"name"`
}
