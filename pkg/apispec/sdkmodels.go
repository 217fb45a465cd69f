package apispec

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// sdkmodels.json is generated from the official Genesys Cloud JavaScript SDK
// (npm purecloud-platform-client-v2, pinned in services/gcsim/contract) by
// services/gcsim/contract/genmodels.mjs: the model each operation of the
// subset returns, the model of each notification topic body, and every model
// reachable from those with its declared properties. The Swagger subset says
// what a response may carry; the SDK models are the second contract, and the
// stricter one on undeclared properties (Swagger allows any).
//
//go:embed sdkmodels.json
var sdkModelsJSON []byte

// SDKOperation is the SDK method of one spec operation (in each API class
// that carries it) and the model it returns ("" for no body). Types follow
// genmodels.mjs: string, number, boolean, object (any value), a model name,
// T[] or {T} (map of T).
type SDKOperation struct {
	APIs    []string `json:"apis"`
	Method  string   `json:"method"`
	Returns string   `json:"returns"`
}

// SDKModels is the parsed sdkmodels.json.
type SDKModels struct {
	SDK        string                        `json:"sdk"`
	Operations map[string]SDKOperation       `json:"operations"` // "METHOD /path/template"
	Topics     map[string]string             `json:"topics"`     // topic template -> model
	Models     map[string]map[string]string  `json:"models"`     // model -> property ("name" or "name?") -> type
	props      map[string]map[string]sdkProp // model -> property name -> declaration
}

type sdkProp struct {
	typ      string
	required bool
}

var (
	sdkOnce   sync.Once
	sdkModels *SDKModels
	sdkErr    error
)

// LoadSDKModels parses the embedded SDK models once.
func LoadSDKModels() (*SDKModels, error) {
	sdkOnce.Do(func() {
		var m SDKModels
		if err := json.Unmarshal(sdkModelsJSON, &m); err != nil {
			sdkErr = fmt.Errorf("apispec: parse sdkmodels.json: %w", err)
			return
		}
		m.props = make(map[string]map[string]sdkProp, len(m.Models))
		for name, props := range m.Models {
			ps := make(map[string]sdkProp, len(props))
			for k, typ := range props {
				key, optional := strings.CutSuffix(k, "?")
				ps[key] = sdkProp{typ: typ, required: !optional}
			}
			m.props[name] = ps
		}
		sdkModels = &m
	})
	return sdkModels, sdkErr
}

// CheckResponse checks the body of a 2xx answer to op ("METHOD /path/template")
// against the model the SDK declares for it. It returns one line per
// problem; none when op is not in the SDK's list or declares no body.
func (m *SDKModels) CheckResponse(op string, body []byte) []string {
	o, ok := m.Operations[op]
	if !ok || o.Returns == "" || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return m.Check(o.Returns, body)
}

// Check validates a JSON document against typ: no property the model does
// not declare, every required one present, every value of the declared type.
// Problems are sorted, each prefixed with its JSON path ($ is the document).
func (m *SDKModels) Check(typ string, body []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{fmt.Sprintf("$: not JSON: %v", err)}
	}
	var out []string
	m.check(typ, v, "$", &out)
	sort.Strings(out)
	return out
}

func (m *SDKModels) check(typ string, v any, path string, out *[]string) {
	bad := func(format string, args ...any) { *out = append(*out, path+": "+fmt.Sprintf(format, args...)) }
	if v == nil {
		bad("null where %s is declared", typ)
		return
	}
	switch {
	case typ == "object":
		return
	case strings.HasSuffix(typ, "[]"):
		arr, ok := v.([]any)
		if !ok {
			bad("%s where %s is declared", jsonKind(v), typ)
			return
		}
		for i, e := range arr {
			m.check(strings.TrimSuffix(typ, "[]"), e, fmt.Sprintf("%s[%d]", path, i), out)
		}
		return
	case strings.HasPrefix(typ, "{"):
		obj, ok := v.(map[string]any)
		if !ok {
			bad("%s where %s is declared", jsonKind(v), typ)
			return
		}
		for k, e := range obj {
			m.check(typ[1:len(typ)-1], e, path+"."+k, out)
		}
		return
	}
	want := map[string]string{"string": "string", "number": "number", "boolean": "boolean"}[typ]
	if want != "" {
		if got := jsonKind(v); got != want {
			bad("%s where %s is declared", got, typ)
		}
		return
	}
	props, ok := m.props[typ]
	if !ok {
		bad("model %s is not in sdkmodels.json (regenerate it)", typ)
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		bad("%s where model %s is declared", jsonKind(v), typ)
		return
	}
	for k, e := range obj {
		p, declared := props[k]
		if !declared {
			bad("property %q is not declared by model %s", k, typ)
			continue
		}
		m.check(p.typ, e, path+"."+k, out)
	}
	for k, p := range props {
		if _, present := obj[k]; p.required && !present {
			bad("required property %q of model %s is missing", k, typ)
		}
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "null"
}
