package genesys

// RoutingSkill is the spec's RoutingSkill.
type RoutingSkill struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state,omitempty"`
}

func (s RoutingSkill) entityName() string { return s.Name }

// Language is the spec's Language (routing language).
type Language struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state,omitempty"`
}

func (l Language) entityName() string { return l.Name }

// UserRoutingSkill is a skill of a user with its proficiency (0–5).
type UserRoutingSkill struct {
	ID          string  `json:"id"`
	Name        string  `json:"name,omitempty"`
	Proficiency float64 `json:"proficiency"`
	State       string  `json:"state,omitempty"`
}

// UserRoutingLanguage is a language of a user with its proficiency (0–5).
type UserRoutingLanguage struct {
	ID          string  `json:"id"`
	Name        string  `json:"name,omitempty"`
	Proficiency float64 `json:"proficiency"`
	State       string  `json:"state,omitempty"`
}

// SkillProficiency is the spec's UserRoutingSkillPost / UserRoutingLanguagePost:
// what to assign (skill or language id) at which proficiency.
type SkillProficiency struct {
	ID          string  `json:"id"`
	Proficiency float64 `json:"proficiency"`
}

// MediaUtilization is the spec's MediaUtilization.
type MediaUtilization struct {
	MaximumCapacity         int      `json:"maximumCapacity"`
	InterruptableMediaTypes []string `json:"interruptableMediaTypes,omitempty"`
	IncludeNonAcd           bool     `json:"includeNonAcd,omitempty"`
}

// Utilization is agent or org utilization: capacity per media type ("call",
// "chat", "email", "message", "callback", "workitem", ...).
type Utilization struct {
	Utilization     map[string]MediaUtilization `json:"utilization,omitempty"`
	MaxInboundCalls int                         `json:"maxInboundCalls,omitempty"`
	Level           string                      `json:"level,omitempty"` // Agent or Organization (responses only)
}

// Queue is the subset of the spec's Queue the pipeline uses.
type Queue struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Division    *Division `json:"division,omitempty"`
	MemberCount int       `json:"memberCount,omitempty"`
}

func (q Queue) entityName() string { return q.Name }

// QueueMember is the spec's QueueMember.
type QueueMember struct {
	ID     string   `json:"id"`
	Name   string   `json:"name,omitempty"`
	User   *UserRef `json:"user,omitempty"`
	Joined bool     `json:"joined,omitempty"`
}

// UserQueue is a queue of a user (GET /users/{id}/queues).
type UserQueue struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Joined bool   `json:"joined"`
}

// Team is the spec's Team.
type Team struct {
	ID          string    `json:"id,omitempty"`
	Name        string    `json:"name"`
	Division    *Division `json:"division,omitempty"`
	Description string    `json:"description,omitempty"`
	MemberCount int64     `json:"memberCount,omitempty"`
}

func (t Team) entityName() string { return t.Name }

// teamCreate is the writable part of Team (POST /api/v2/teams).
type teamCreate struct {
	Name        string    `json:"name"`
	Division    *Division `json:"division,omitempty"`
	Description string    `json:"description,omitempty"`
}

// TeamMemberAddResult is the spec's TeamMemberAddListingResponse.
type TeamMemberAddResult struct {
	Entities []UserRef `json:"entities"`
	Failures []struct {
		ID     string `json:"id"`
		Reason string `json:"reason"`
	} `json:"failures,omitempty"`
}
