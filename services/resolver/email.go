package resolver

import (
	"github.com/orgsync/orgsync/pkg/emailmap"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// MapEmail derives a user's email in a target org. A nil rule keeps the
// source email. The result must be a valid address, else the mapping is
// rejected (the plan fails with this reason and nothing is written).
// The rule logic lives in pkg/emailmap, shared with the extractor.
func MapEmail(email string, rule *orgsyncv1.EmailMapping) (string, error) {
	return emailmap.Map(email, rule)
}

// ValidateEmailMapping checks a rule before any user is mapped with it.
func ValidateEmailMapping(rule *orgsyncv1.EmailMapping) error { return emailmap.Validate(rule) }
