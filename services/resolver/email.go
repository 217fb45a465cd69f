package resolver

import (
	"fmt"
	"net/mail"
	"strings"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// MapEmail derives a user's email in a target org. A nil rule keeps the
// source email. The result must be a valid address, else the mapping is
// rejected (the plan fails with this reason and nothing is written).
func MapEmail(email string, rule *orgsyncv1.EmailMapping) (string, error) {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != strings.TrimSpace(email) {
		return "", fmt.Errorf("email mapping: source email %q is not a valid address", email)
	}
	if rule == nil {
		return addr.Address, nil
	}
	if err := ValidateEmailMapping(rule); err != nil {
		return "", err
	}
	at := strings.LastIndexByte(addr.Address, '@')
	local, domain := addr.Address[:at], addr.Address[at+1:]
	if rule.GetFromDomain() != "" && !strings.EqualFold(domain, rule.GetFromDomain()) {
		return addr.Address, nil
	}
	return local + "@" + strings.ToLower(rule.GetToDomain()), nil
}

// ValidateEmailMapping checks a rule before any user is mapped with it.
func ValidateEmailMapping(rule *orgsyncv1.EmailMapping) error {
	to := rule.GetToDomain()
	if to == "" {
		return fmt.Errorf("email mapping: to_domain is empty")
	}
	if _, err := mail.ParseAddress("x@" + to); err != nil || strings.ContainsAny(to, "@ ") || !strings.Contains(to, ".") {
		return fmt.Errorf("email mapping: to_domain %q is not a valid domain", to)
	}
	if from := rule.GetFromDomain(); from != "" && (strings.ContainsAny(from, "@ ") || !strings.Contains(from, ".")) {
		return fmt.Errorf("email mapping: from_domain %q is not a valid domain", from)
	}
	return nil
}
