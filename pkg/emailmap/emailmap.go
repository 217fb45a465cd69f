// Package emailmap derives a user's email in a target org from the source
// email and a per-target EmailMapping rule (domain rewrite). It is shared by
// the extractor, which rejects a clone request with an invalid rule before
// anything happens, and the resolver, which maps every user per target.
package emailmap

import (
	"fmt"
	"net/mail"
	"strings"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Map derives a user's email in a target org. A nil rule keeps the source
// email. The result must be a valid address, else the mapping is rejected
// (the plan fails with this reason and nothing is written).
func Map(email string, rule *orgsyncv1.EmailMapping) (string, error) {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != strings.TrimSpace(email) {
		return "", fmt.Errorf("email mapping: source email %q is not a valid address", email)
	}
	if rule == nil {
		return addr.Address, nil
	}
	if err := Validate(rule); err != nil {
		return "", fmt.Errorf("email mapping: %w", err)
	}
	at := strings.LastIndexByte(addr.Address, '@')
	local, domain := addr.Address[:at], addr.Address[at+1:]
	if rule.GetFromDomain() != "" && !strings.EqualFold(domain, rule.GetFromDomain()) {
		return addr.Address, nil
	}
	return local + "@" + strings.ToLower(rule.GetToDomain()), nil
}

// Validate checks a rule before any user is mapped with it: to_domain is
// required and must be a domain; from_domain, when set, must be a domain.
// Its errors name the field only: callers say which rule they checked.
func Validate(rule *orgsyncv1.EmailMapping) error {
	to := rule.GetToDomain()
	if to == "" {
		return fmt.Errorf("to_domain is empty")
	}
	if _, err := mail.ParseAddress("x@" + to); err != nil || strings.ContainsAny(to, "@ ") || !strings.Contains(to, ".") {
		return fmt.Errorf("to_domain %q is not a valid domain", to)
	}
	if from := rule.GetFromDomain(); from != "" && (strings.ContainsAny(from, "@ ") || !strings.Contains(from, ".")) {
		return fmt.Errorf("from_domain %q is not a valid domain", from)
	}
	return nil
}
