package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// configTypes are the types the YAML decoder names in its errors.
var configTypes = map[string]reflect.Type{
	"config.Config":          reflect.TypeFor[Config](),
	"config.Limits":          reflect.TypeFor[Limits](),
	"config.Service":         reflect.TypeFor[Service](),
	"config.Backend":         reflect.TypeFor[Backend](),
	"config.Health":          reflect.TypeFor[Health](),
	"config.HTTPCheck":       reflect.TypeFor[HTTPCheck](),
	"config.BGP":             reflect.TypeFor[BGP](),
	"config.Peer":            reflect.TypeFor[Peer](),
	"config.VIPPolicy":       reflect.TypeFor[VIPPolicy](),
	"config.GracefulRestart": reflect.TypeFor[GracefulRestart](),
	"config.Decap":           reflect.TypeFor[Decap](),
}

var (
	yamlLineRe    = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	yamlUnknownRe = regexp.MustCompile(`^field (.+) not found in type (\S+)$`)
	yamlTypeRe    = regexp.MustCompile("(?s)^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
)

// yamlError turns a decoder error into one line with the field path.
func yamlError(data []byte, err error) error {
	fe := yamlFieldError(data, err)
	// Whatever the decoder quoted (a scalar with line breaks under a tag
	// the patterns do not know, found by FuzzParseConfig: "!0 0\r\r0"),
	// the error stays one line.
	fe.Reason = oneLine(fe.Reason)
	return fe
}

// oneLine shows the line breaks in s (LF, CR, CRLF) as \n.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", `\n`, "\n", `\n`, "\r", `\n`).Replace(s)
}

func yamlFieldError(data []byte, err error) *FieldError {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		fe := newYAMLIndex(data).translate(te.Errors[0])
		if n := len(te.Errors) - 1; n == 1 {
			fe.Reason += " (and 1 more error)"
		} else if n > 1 {
			fe.Reason += fmt.Sprintf(" (and %d more errors)", n)
		}
		return fe
	}
	// Syntax errors: "yaml: line 3: mapping values are not allowed ...",
	// without the line on the first one.
	fe = &FieldError{Reason: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLineRe.FindStringSubmatch(fe.Reason); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Reason = m[2]
	}
	fe.Reason = "invalid YAML: " + fe.Reason
	if strings.Contains(fe.Reason, "cannot start any token") && bytes.Contains(data, []byte("\t")) {
		fe.Reason += " (tabs are not allowed in indentation)"
	}
	return fe
}

type yamlKey struct {
	line         int
	name, parent string
}

type yamlValue struct {
	path string
	node *yaml.Node
}

// yamlIndex maps field paths to lines and back, from the document's node
// tree.
type yamlIndex struct {
	lines  map[string]int // path -> line of its key or list item
	keys   []yamlKey
	values []yamlValue
}

func newYAMLIndex(data []byte) *yamlIndex {
	idx := &yamlIndex{lines: make(map[string]int)}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		idx.walk(doc.Content[0], "", 0)
	}
	return idx
}

func (idx *yamlIndex) walk(n *yaml.Node, path string, line int) {
	if path != "" {
		idx.lines[path] = line
	}
	idx.values = append(idx.values, yamlValue{path, n})
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			idx.keys = append(idx.keys, yamlKey{k.Line, k.Value, path})
			idx.walk(v, joinPath(path, k.Value), k.Line)
		}
	case yaml.SequenceNode:
		for i, it := range n.Content {
			idx.walk(it, joinPath(path, "["+strconv.Itoa(i)+"]"), it.Line)
		}
	}
}

// lineOf returns the line of path or of its nearest ancestor written in
// the file (a default has no line of its own); 0 if none.
func (idx *yamlIndex) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := idx.lines[p]; ok {
			return l
		}
	}
	return 0
}

// translate rewrites one of the decoder's type errors.
func (idx *yamlIndex) translate(msg string) *FieldError {
	m := yamlLineRe.FindStringSubmatch(msg)
	if m == nil {
		return &FieldError{Reason: msg}
	}
	line, _ := strconv.Atoi(m[1])
	msg = m[2]

	if u := yamlUnknownRe.FindStringSubmatch(msg); u != nil {
		name, where := u[1], "the top level"
		for _, k := range idx.keys {
			if k.line == line && k.name == name {
				if k.parent != "" {
					where = k.parent
				}
				break
			}
		}
		reason := fmt.Sprintf("field %q not found in %s", name, where)
		if t, ok := configTypes[u[2]]; ok {
			reason += " (" + suggest(name, fieldNames(t, "yaml")) + ")"
		}
		return &FieldError{Line: line, Reason: reason}
	}

	t := yamlTypeRe.FindStringSubmatch(msg)
	if t == nil {
		return &FieldError{Line: line, Reason: msg}
	}
	tag, shown, target := "!!"+t[1], t[2], t[3]
	var found *yamlValue
	for i := range idx.values {
		v := &idx.values[i]
		if v.node.Line != line || v.node.ShortTag() != tag {
			continue
		}
		if v.node.Kind == yaml.ScalarNode {
			if strings.HasPrefix(v.node.Value, strings.TrimSuffix(shown, "...")) {
				found = v
				break
			}
		} else {
			found = v // the innermost collection on the line
		}
	}
	src := yamlSource(tag)
	fe := &FieldError{Line: line}
	raw := shown
	if found != nil {
		fe.Path = found.path
		raw = found.node.Value
	}
	if found == nil || found.node.Kind == yaml.ScalarNode {
		switch src {
		case srcInt, srcFloat, srcBool:
			fe.Value = raw
		default:
			fe.Value = quote(raw)
		}
	}
	fe.Reason = typeReason(target, src, raw, false)
	if (found != nil && found.path == "") || (found == nil && target == "config.Config") {
		fe.Path, fe.Value = "", ""
		fe.Reason = "the config must be a mapping (interface:, xdp_mode:, limits:, services:)"
	}
	return fe
}

// yamlSource maps a YAML tag to a source kind.
func yamlSource(tag string) string {
	switch tag {
	case "!!int":
		return srcInt
	case "!!float":
		return srcFloat
	case "!!bool":
		return srcBool
	case "!!null":
		return srcNull
	case "!!map":
		return srcMap
	case "!!seq":
		return srcSeq
	}
	return srcString
}

// suggest names the known field closest to a misspelt one, or lists them
// all.
func suggest(name string, known []string) string {
	best, dist := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), k); d < dist {
			best, dist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "known fields: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// checkWhole finds a fractional number given for an integer field, which
// the decoder would silently truncate ("weight: 1.5" is 1).
func checkWhole(data []byte) error {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	return wholeNumbers(&doc, reflect.TypeFor[Config](), "")
}

func wholeNumbers(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := wholeNumbers(c, t, path); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		if t.Kind() != reflect.Struct {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			for j := range t.NumField() {
				f := t.Field(j)
				if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == k {
					if err := wholeNumbers(n.Content[i+1], f.Type, joinPath(path, k)); err != nil {
						return err
					}
				}
			}
		}
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			return nil
		}
		for i, c := range n.Content {
			if err := wholeNumbers(c, t.Elem(), joinPath(path, "["+strconv.Itoa(i)+"]")); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if n.ShortTag() != "!!float" || reflect.PointerTo(t).Implements(yamlUnmarshaler) {
			return nil
		}
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return &FieldError{Line: n.Line, Path: path, Value: n.Value, Reason: typeReason(t.String(), srcFloat, n.Value, false)}
		}
	}
	return nil
}
