package config

import (
	"reflect"
	"strconv"
	"strings"
)

// FieldError is a bad value in a config file or API body.
type FieldError struct {
	// Line is the 1-based line of the config file, 0 when unknown (API
	// bodies, or values that came from a default).
	Line int
	// Path is the field path, e.g. "services[1].backends[0].address".
	// Errors from Service.Normalize carry paths relative to the service.
	Path string
	// Value is the bad value as written in the message: strings quoted
	// ("\"198.18.0.300\""), numbers bare ("70000"); empty when the
	// message shows none.
	Value string
	// Reason says what is wrong, e.g. "not an IP address".
	Reason string
}

// Error formats the error as one line: "line N: path value: reason".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	b.WriteString(e.Path)
	if e.Value != "" {
		if e.Path != "" {
			b.WriteByte(' ')
		}
		b.WriteString(e.Value)
	}
	if e.Path != "" || e.Value != "" {
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// fieldErr builds a FieldError for path with a pre-formatted value.
func fieldErr(path, value, reason string) *FieldError {
	return &FieldError{Path: path, Value: value, Reason: reason}
}

// quote formats a string value for a message.
func quote(s string) string { return strconv.Quote(s) }

// joinPath appends a field name or an index ("[3]") to a path.
func joinPath(parent, child string) string {
	switch {
	case parent == "":
		return child
	case child == "":
		return parent
	case strings.HasPrefix(child, "["):
		return parent + child
	}
	return parent + "." + child
}

// under re-roots an error of a nested value at prefix ("services[2]").
func under(prefix string, err error) error {
	if fe, ok := err.(*FieldError); ok {
		c := *fe
		c.Path = joinPath(prefix, fe.Path)
		return &c
	}
	return &FieldError{Path: prefix, Reason: err.Error()}
}

// parentPath strips the last element of a path: "a.b[2]" -> "a.b",
// "a.b" -> "a", "a" -> "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// fieldNames lists the keys (tag) of struct type t in declaration order.
func fieldNames(t reflect.Type, tag string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names = append(names, name)
	}
	return names
}

// Source kinds of a value that failed to decode, common to YAML and JSON.
const (
	srcString = "string"
	srcInt    = "int"
	srcFloat  = "float"
	srcBool   = "bool"
	srcNull   = "null"
	srcMap    = "map"
	srcSeq    = "seq"
)

// typeReason explains why a value of kind src (raw text raw, unquoted)
// cannot go into a Go value of type target (a reflect type string such as
// "uint32" or "[]config.Backend"). json selects JSON vocabulary.
func typeReason(target, src, raw string, json bool) string {
	mapping, list := "a mapping", "a list"
	if json {
		mapping, list = "an object", "an array"
	}
	target = strings.TrimPrefix(target, "*")
	switch target {
	case "int", "int8", "int16", "int32", "int64",
		"uint", "uint8", "uint16", "uint32", "uint64":
		switch src {
		case srcInt:
			if strings.HasPrefix(raw, "-") && strings.HasPrefix(target, "uint") {
				return "must not be negative"
			}
			return "too large"
		case srcFloat:
			if strings.TrimLeft(strings.TrimPrefix(raw, "-"), "0123456789") == "" {
				return "too large"
			}
			return "not a whole number"
		case srcString:
			if _, err := strconv.ParseInt(raw, 10, 64); err == nil {
				return "want a number, not a quoted string"
			}
			return "not a number"
		case srcMap:
			return "want a number, not " + mapping
		case srcSeq:
			return "want a number, not " + list
		}
		return "not a number"
	case "bool":
		return "want true or false"
	case "string":
		switch src {
		case srcMap:
			return "want a string, not " + mapping
		case srcSeq:
			return "want a string, not " + list
		}
		return "want a string"
	case "config.Duration":
		return "not a duration (want e.g. 2s, 500ms or 1m)"
	}
	if strings.HasPrefix(target, "[]") {
		return "want " + list
	}
	return "want " + mapping
}
