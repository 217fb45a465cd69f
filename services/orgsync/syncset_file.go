package orgsync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// A sync set file holds one or more YAML documents, each one sync set:
//
//	name: billing-agents
//	source: source
//	select: {teams: [Billing Team], search: [{field: department, values: [Billing]}]}
//	targets: [target1, target2]          # or {orgs: [...], selector: "region=emea"}
//	options: {include: [skills, queues], existing: adopt, emailMapping: {target1: {from: a.com, to: b.com}}}
//	onRemove: deactivate                 # keep (default) | report | deactivate
//	maxUsers: 5000
//
// Decoding is strict: an unknown field, a wrong type, an empty selection
// are errors with the file's line; the service's field errors (unknown org,
// no such team) are mapped back to lines through the paths it names.

type syncSetDoc struct {
	Name     string      `yaml:"name"`
	Source   string      `yaml:"source"`
	Select   *selectDoc  `yaml:"select"`
	Targets  yaml.Node   `yaml:"targets"`
	Options  *optionsDoc `yaml:"options"`
	OnRemove string      `yaml:"onRemove"`
	MaxUsers int32       `yaml:"maxUsers"`
}

type selectDoc struct {
	Emails    []string    `yaml:"emails"`
	IDs       []string    `yaml:"ids"`
	Teams     []string    `yaml:"teams"`
	Divisions []string    `yaml:"divisions"`
	Queues    []string    `yaml:"queues"`
	Search    []searchDoc `yaml:"search"`
}

type searchDoc struct {
	Field  string   `yaml:"field"`
	Values []string `yaml:"values"`
	Type   string   `yaml:"type"`
}

type targetsDoc struct {
	Orgs     []string `yaml:"orgs"`
	Selector string   `yaml:"selector"`
}

type optionsDoc struct {
	Include      []string                   `yaml:"include"`
	Existing     string                     `yaml:"existing"`
	EmailMapping map[string]emailMappingDoc `yaml:"emailMapping"`
}

type emailMappingDoc struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// SyncSetFile is one parsed document: the set and where its fields are.
type SyncSetFile struct {
	Path string
	Set  *orgsyncv1.SyncSet
	// lines maps a field path ("targets.orgs[1]", "select.teams[0]") to
	// its line; Line falls back to the closest parent path.
	lines map[string]int
	start int
}

// Line is the line of path or of its closest parent.
func (f *SyncSetFile) Line(path string) int {
	for p := path; p != ""; {
		if l, ok := f.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return f.start
}

// ParseSyncSets parses every document of a sync set file.
func ParseSyncSets(path string, r io.Reader) ([]*SyncSetFile, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var out []*SyncSetFile
	var errs []error
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if len(node.Content) == 0 {
			continue
		}
		f, err := parseSyncSetNode(path, node.Content[0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, f)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no sync set in the file", path)
	}
	return out, nil
}

func parseSyncSetNode(path string, n *yaml.Node) (*SyncSetFile, error) {
	f := &SyncSetFile{Path: path, lines: map[string]int{}, start: n.Line}
	at := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
	}
	// Strict decoding: KnownFields reports unknown fields with their line.
	var doc syncSetDoc
	if err := strictDecode(n, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	indexLines(n, "", f.lines)
	set := &orgsyncv1.SyncSet{Name: doc.Name, SourceOrg: doc.Source, MaxUsers: doc.MaxUsers}
	if doc.Name == "" {
		return nil, at(n.Line, "name is required")
	}
	if doc.Source == "" {
		return nil, at(n.Line, "sync set %s: source is required", doc.Name)
	}
	if doc.Select == nil {
		return nil, at(n.Line, "sync set %s: select is required (emails, ids, teams, divisions, queues or search)", doc.Name)
	}
	s := doc.Select
	if len(s.Emails)+len(s.IDs)+len(s.Teams)+len(s.Divisions)+len(s.Queues)+len(s.Search) == 0 {
		return nil, at(f.Line("select"), "sync set %s: empty selection: give at least one of emails, ids, teams, divisions, queues, search", doc.Name)
	}
	set.Select = &orgsyncv1.SyncSelection{Emails: s.Emails, UserIds: s.IDs, Teams: s.Teams, Divisions: s.Divisions, Queues: s.Queues}
	for _, c := range s.Search {
		set.Select.Search = append(set.Select.Search, &orgsyncv1.SearchCriterion{Field: c.Field, Values: c.Values, Type: c.Type})
	}
	set.Targets = &orgsyncv1.SyncTargets{}
	switch doc.Targets.Kind {
	case 0:
		return nil, at(n.Line, "sync set %s: targets is required (org keys, or {orgs: [...], selector: \"key=value\"})", doc.Name)
	case yaml.SequenceNode:
		if err := strictDecode(&doc.Targets, &set.Targets.Orgs); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		for i, c := range doc.Targets.Content {
			f.lines[fmt.Sprintf("targets.orgs[%d]", i)] = c.Line
		}
	case yaml.MappingNode:
		var t targetsDoc
		if err := strictDecode(&doc.Targets, &t); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		set.Targets.Orgs, set.Targets.Selector = t.Orgs, t.Selector
	default:
		return nil, at(doc.Targets.Line, "sync set %s: targets must be a list of org keys or {orgs, selector}", doc.Name)
	}
	switch strings.ToLower(doc.OnRemove) {
	case "", "keep":
		set.OnRemove = orgsyncv1.OnRemove_ON_REMOVE_KEEP
	case "report":
		set.OnRemove = orgsyncv1.OnRemove_ON_REMOVE_REPORT
	case "deactivate":
		set.OnRemove = orgsyncv1.OnRemove_ON_REMOVE_DEACTIVATE
	default:
		return nil, at(f.Line("onRemove"), "sync set %s: onRemove %q: want keep, report or deactivate (orgsync never deletes)", doc.Name, doc.OnRemove)
	}
	if o := doc.Options; o != nil {
		include, err := ParseComponents(strings.Join(o.Include, ","))
		if err != nil {
			return nil, at(f.Line("options.include"), "sync set %s: options.include: %v", doc.Name, err)
		}
		existing, err := ParseExisting(o.Existing)
		if err != nil {
			return nil, at(f.Line("options.existing"), "sync set %s: options.existing: %v", doc.Name, strings.TrimPrefix(err.Error(), "--existing "))
		}
		set.Options = &orgsyncv1.CloneOptions{Include: include, ExistingUsers: existing}
		for t, m := range o.EmailMapping {
			if set.Options.EmailMapping == nil {
				set.Options.EmailMapping = map[string]*orgsyncv1.EmailMapping{}
			}
			set.Options.EmailMapping[t] = &orgsyncv1.EmailMapping{FromDomain: m.From, ToDomain: m.To}
		}
	}
	f.Set = set
	return f, nil
}

// strictDecode decodes node into v refusing unknown fields (yaml.v3 only
// applies KnownFields through a Decoder, so the node is re-encoded).
func strictDecode(node *yaml.Node, v any) error {
	b, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return remapLines(err, node)
	}
	return nil
}

// remapLines rewrites "line N" of an error about a re-encoded node into the
// file's line (the node's first line + N - 1).
func remapLines(err error, node *yaml.Node) error {
	msg := err.Error()
	var b strings.Builder
	for {
		i := strings.Index(msg, "line ")
		if i < 0 {
			b.WriteString(msg)
			break
		}
		j := i + len("line ")
		k := j
		for k < len(msg) && msg[k] >= '0' && msg[k] <= '9' {
			k++
		}
		if k == j {
			b.WriteString(msg[:j])
			msg = msg[j:]
			continue
		}
		var n int
		fmt.Sscan(msg[j:k], &n)
		fmt.Fprintf(&b, "%sline %d", msg[:i], node.Line+n-1)
		msg = msg[k:]
	}
	return errors.New(strings.TrimPrefix(b.String(), "yaml: "))
}

// indexLines records the line of every mapping key and sequence item under
// prefix, with the service's path names (ids for select.ids, etc.).
func indexLines(n *yaml.Node, prefix string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			lines[p] = k.Line
			indexLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			lines[p] = c.Line
			indexLines(c, p, lines)
		}
	}
}
