package genesys

// Field names follow the spec's definitions (User, CreateUser, UpdateUser,
// Contact, ...). Request types carry only writable fields, so a request never
// sends a property the spec marks readOnly.

// User is the spec's User as the client reads it.
type User struct {
	ID            string                `json:"id"`
	Name          string                `json:"name,omitempty"`
	Division      *Division             `json:"division,omitempty"`
	Department    string                `json:"department,omitempty"`
	Email         string                `json:"email,omitempty"`
	Addresses     []Contact             `json:"addresses,omitempty"`
	State         string                `json:"state,omitempty"` // active, inactive, deleted
	Title         string                `json:"title,omitempty"`
	Username      string                `json:"username,omitempty"`
	Manager       *UserRef              `json:"manager,omitempty"`
	Version       int                   `json:"version"`
	Skills        []UserRoutingSkill    `json:"skills,omitempty"`    // expand=skills (best effort)
	Languages     []UserRoutingLanguage `json:"languages,omitempty"` // expand=languages (best effort)
	Team          *Team                 `json:"team,omitempty"`      // expand=team
	Authorization *UserAuthorization    `json:"authorization,omitempty"`
}

// UserRef is a reference to a user (manager, members).
type UserRef struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Division is the spec's Division reference.
type Division struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// UserAuthorization is the spec's UserAuthorization (expand=authorization).
type UserAuthorization struct {
	Roles []DomainRole `json:"roles,omitempty"`
}

// DomainRole is a role reference within UserAuthorization.
type DomainRole struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Contact is an address of a user: for a phone, MediaType "PHONE" and Type
// "WORK" (the spec's Contact without the readOnly display).
type Contact struct {
	Address     string `json:"address,omitempty"`
	MediaType   string `json:"mediaType,omitempty"` // PHONE, EMAIL, SMS
	Type        string `json:"type,omitempty"`      // PRIMARY, WORK, WORK2, ..., MOBILE, ...
	Extension   string `json:"extension,omitempty"`
	CountryCode string `json:"countryCode,omitempty"`
}

// CreateUser is the body of POST /api/v2/users. Name, Email and DivisionID are
// required. The manager cannot be set at creation: PatchUser sets it.
type CreateUser struct {
	Name       string    `json:"name"`
	Email      string    `json:"email"`
	DivisionID string    `json:"divisionId"`
	Department string    `json:"department,omitempty"`
	Title      string    `json:"title,omitempty"`
	Addresses  []Contact `json:"addresses,omitempty"`
	State      string    `json:"state,omitempty"`
}

// UserPatch lists the profile fields PatchUser changes; nil fields are left
// as they are. Addresses replaces the whole list when non-nil.
type UserPatch struct {
	Name       *string
	Title      *string
	Department *string
	Email      *string
	Manager    *string // user id of the manager; "" clears it
	Addresses  *[]Contact
	State      *string // "active" or "inactive" (a user is never deleted by orgsync)
}

// updateUser is the body of PATCH /api/v2/users/{userId} (spec UpdateUser).
type updateUser struct {
	Name       *string    `json:"name,omitempty"`
	Title      *string    `json:"title,omitempty"`
	Department *string    `json:"department,omitempty"`
	Email      *string    `json:"email,omitempty"`
	Manager    *string    `json:"manager,omitempty"`
	Addresses  *[]Contact `json:"addresses,omitempty"`
	State      *string    `json:"state,omitempty"`
	Version    int        `json:"version"`
}

// ExternalID is the spec's UserExternalIdentifier: a key unique within an
// authority, e.g. {AuthorityName: "orgsync", ExternalKey: "SRC|USER|jane"}.
type ExternalID struct {
	AuthorityName string `json:"authorityName"`
	ExternalKey   string `json:"externalKey"`
}

// userSearchRequest is the spec's UserSearchRequest.
type userSearchRequest struct {
	PageSize   int                  `json:"pageSize,omitempty"`
	PageNumber int                  `json:"pageNumber,omitempty"`
	Query      []userSearchCriteria `json:"query"`
}

type userSearchCriteria struct {
	Type   string   `json:"type"`
	Fields []string `json:"fields,omitempty"`
	Value  string   `json:"value,omitempty"`
}

type usersSearchResponse struct {
	Total     int64  `json:"total"`
	PageCount int    `json:"pageCount"`
	Results   []User `json:"results"`
}
