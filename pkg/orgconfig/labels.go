package orgconfig

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// labelPattern is the alphabet of label keys and values: plain tokens, so a
// selector reads the same in YAML, on a command line and in a log line.
var labelPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

func validLabel(key, value string) error {
	if !labelPattern.MatchString(key) {
		return fmt.Errorf("label key %q must be 1..63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", key)
	}
	if !labelPattern.MatchString(value) {
		return fmt.Errorf("label %s: value %q must be 1..63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", key, value)
	}
	return nil
}

// Selector is a label selector over the org registry: every requirement must
// hold (AND). The zero Selector matches nothing (an empty selector is a
// mistake, not "every org").
type Selector struct {
	reqs []requirement
}

type requirement struct {
	key    string
	values []string // key=v or key in (a,b); empty with exists
	not    bool     // key!=v
	exists bool     // bare key: the label is set
}

// ParseSelector parses "key=value,key!=value,key in (a b),key": the
// Kubernetes-style equality and set requirements, comma-separated. It is
// the one syntax of sync sets (targets.selector) and the CLI
// (--target-selector).
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	s = strings.TrimSpace(s)
	if s == "" {
		return sel, errors.New("empty label selector (want key=value[,key2=value2])")
	}
	for _, part := range splitSelector(s) {
		part = strings.TrimSpace(part)
		var r requirement
		switch {
		case strings.Contains(part, " in "):
			k, set, _ := strings.Cut(part, " in ")
			set = strings.TrimSpace(set)
			if !strings.HasPrefix(set, "(") || !strings.HasSuffix(set, ")") {
				return Selector{}, fmt.Errorf("label selector %q: %q: want key in (v1 v2)", s, part)
			}
			r.key = strings.TrimSpace(k)
			r.values = strings.FieldsFunc(set[1:len(set)-1], func(c rune) bool { return c == ' ' || c == '|' })
		case strings.Contains(part, "!="):
			k, v, _ := strings.Cut(part, "!=")
			r = requirement{key: strings.TrimSpace(k), values: []string{strings.TrimSpace(v)}, not: true}
		case strings.Contains(part, "="):
			k, v, _ := strings.Cut(part, "=")
			r = requirement{key: strings.TrimSpace(k), values: []string{strings.TrimSpace(strings.TrimPrefix(v, "="))}}
		default:
			r = requirement{key: part, exists: true}
		}
		if len(r.values) == 0 && !r.exists {
			return Selector{}, fmt.Errorf("label selector %q: %q has no value", s, part)
		}
		for _, v := range r.values {
			if err := validLabel(r.key, v); err != nil {
				return Selector{}, fmt.Errorf("label selector %q: %w", s, err)
			}
		}
		if r.exists && !labelPattern.MatchString(r.key) {
			return Selector{}, fmt.Errorf("label selector %q: %q is not a label key", s, part)
		}
		sel.reqs = append(sel.reqs, r)
	}
	return sel, nil
}

// splitSelector splits on commas outside parentheses.
func splitSelector(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// Matches reports whether labels satisfy every requirement of sel.
func (sel Selector) Matches(labels map[string]string) bool {
	if len(sel.reqs) == 0 {
		return false
	}
	for _, r := range sel.reqs {
		v, ok := labels[r.key]
		switch {
		case r.exists:
			if !ok {
				return false
			}
		case r.not:
			if ok && v == r.values[0] {
				return false
			}
		default:
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		}
	}
	return true
}

// Matching returns the keys of the orgs whose labels match sel, sorted.
func (c *Config) Matching(sel Selector) []string {
	var out []string
	for k, o := range c.orgs {
		if sel.Matches(o.Labels) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
