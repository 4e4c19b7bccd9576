package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// DecodeService decodes one service from a JSON API body, strictly
// (unknown fields are errors), and normalises and validates it. Error
// paths are relative to the service. The caller bounds the body's size.
func DecodeService(r io.Reader) (Service, error) {
	var s Service
	if err := decodeJSON(r, &s); err != nil {
		return Service{}, err
	}
	if err := s.Normalize(); err != nil {
		return Service{}, err
	}
	return s, nil
}

// DecodeBackend decodes one backend from a JSON API body, strictly, and
// normalises and validates it (weight 1 if absent).
func DecodeBackend(r io.Reader) (Backend, error) {
	var b Backend
	if err := decodeJSON(r, &b); err != nil {
		return Backend{}, err
	}
	if err := b.normalizeAlone(); err != nil {
		return Backend{}, err
	}
	return b, nil
}

// BackendSet is the body of a bulk sync (PUT
// /v1/services/{service}/backends): a service's whole backend set.
type BackendSet struct {
	// Backends is the set, each with its address and weight (default 1),
	// as a service's backends are in the config file.
	Backends []Backend `json:"backends"`
	// AllowEmpty lets the set be empty; without it (or the allow_empty
	// query parameter) a sync that would leave no backend is refused.
	AllowEmpty bool `json:"allow_empty,omitempty"`
}

// DecodeBackendSet decodes a bulk sync's body, strictly. The backends are
// validated with their service (Service.Normalize), which names each bad
// entry as backends[i].
func DecodeBackendSet(r io.Reader) (BackendSet, error) {
	var s BackendSet
	if err := decodeJSON(r, &s); err != nil {
		return BackendSet{}, err
	}
	if s.Backends == nil {
		return BackendSet{}, fieldErr("backends", "", "missing: want a list of backends ([] with allow_empty for none)")
	}
	return s, nil
}

// DecodeBGP decodes the bgp section from a JSON API body, strictly, and
// normalises and validates it. Error paths are relative to the section.
func DecodeBGP(r io.Reader) (*BGP, error) {
	var b BGP
	if err := decodeJSON(r, &b); err != nil {
		return nil, err
	}
	if err := b.normalize(); err != nil {
		return nil, err
	}
	return &b, nil
}

// decodeJSON decodes exactly one JSON value into v, rejecting unknown
// fields, with errors rewritten to name the field path.
func decodeJSON(r io.Reader, v any) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		var extra json.RawMessage
		if dec.Decode(&extra) != io.EOF {
			return errors.New("invalid JSON: more data after the object")
		}
		return nil
	}
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty body: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: unexpected end of input")
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		return typeErrorJSON(data, reflect.TypeOf(v).Elem(), te)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return unknownFieldJSON(data, reflect.TypeOf(v).Elem(), name)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// typeErrorJSON names the path and value of a JSON type error.
func typeErrorJSON(data []byte, root reflect.Type, te *json.UnmarshalTypeError) error {
	w := walkJSON(data, root)
	src, raw := srcString, ""
	kind, num, _ := strings.Cut(te.Value, " ")
	switch kind {
	case "number":
		src, raw = srcInt, num
		if strings.ContainsAny(num, ".eE") {
			src = srcFloat
		}
	case "bool":
		src = srcBool
	case "object":
		src = srcMap
	case "array":
		src = srcSeq
	case "string":
	default: // from Duration.UnmarshalJSON: the raw JSON text
		raw = te.Value
		switch {
		case strings.HasPrefix(raw, `"`):
		case strings.HasPrefix(raw, "{"):
			src = srcMap
		case strings.HasPrefix(raw, "["):
			src = srcSeq
		case raw == "true" || raw == "false":
			src = srcBool
		default:
			src = srcInt
		}
	}
	// The decoder's path has no list indexes ("backends.weight"): find the
	// value it means, by its offset or text.
	var found *jsonValue
	for i := range w.values {
		v := &w.values[i]
		if v.canon != te.Field {
			continue
		}
		if te.Offset > 0 && v.start < te.Offset && te.Offset <= v.end ||
			te.Offset == 0 && (raw == "" || v.raw == raw) {
			found = v
			break
		}
		if found == nil {
			found = v
		}
	}
	fe := &FieldError{Path: te.Field}
	if found != nil {
		fe.Path = found.path
		if src != srcMap && src != srcSeq {
			fe.Value = found.raw
		}
	} else if raw != "" {
		fe.Value = raw
	}
	unq := raw
	if found != nil && src == srcString {
		unq, _ = strconv.Unquote(found.raw)
	}
	fe.Reason = typeReason(te.Type.String(), src, unq, true)
	if fe.Path == "" {
		fe.Value, fe.Reason = "", "want a JSON object"
	}
	return fe
}

// unknownFieldJSON names where an unknown field is.
func unknownFieldJSON(data []byte, root reflect.Type, name string) error {
	w := walkJSON(data, root)
	at, t := "", root
	if w.unknown != nil {
		at, t = w.unknown.parent, w.unknown.t
	}
	reason := fmt.Sprintf("unknown field %q", name)
	if at != "" {
		reason += " in " + at
	}
	if t != nil {
		reason += " (" + suggest(name, fieldNames(t, "json")) + ")"
	}
	return &FieldError{Reason: reason}
}

// jsonValue is one value of a JSON document.
type jsonValue struct {
	path  string // with list indexes: backends[1].weight
	canon string // as encoding/json names it: backends.weight
	start int64  // offsets in the document
	end   int64
	raw   string // the text of a scalar
}

type jsonUnknown struct {
	parent string
	t      reflect.Type
}

type jsonWalker struct {
	data    []byte
	dec     *json.Decoder
	values  []jsonValue
	unknown *jsonUnknown // the first unknown field
}

// walkJSON lists the values of a document alongside the Go type each
// decodes into, as far as the document is well formed.
func walkJSON(data []byte, root reflect.Type) *jsonWalker {
	w := &jsonWalker{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	w.dec.UseNumber()
	_ = w.value("", "", root)
	return w
}

// start returns the offset where the next token begins.
func (w *jsonWalker) start() int64 {
	i := w.dec.InputOffset()
	for i < int64(len(w.data)) && strings.IndexByte(" \t\r\n,:", w.data[i]) >= 0 {
		i++
	}
	return i
}

func (w *jsonWalker) value(path, canon string, t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	start := w.start()
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	i := len(w.values)
	w.values = append(w.values, jsonValue{path: path, canon: canon, start: start})
	switch tok {
	case json.Delim('{'):
		var st reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			st = t
		}
		for w.dec.More() {
			k, err := w.dec.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			name, ft := key, reflect.Type(nil)
			if st != nil {
				if f, ok := jsonField(st, key); ok {
					name, ft = f.name, f.t
				} else if w.unknown == nil {
					w.unknown = &jsonUnknown{parent: path, t: st}
				}
			}
			if err := w.value(joinPath(path, name), joinPath(canon, name), ft); err != nil {
				return err
			}
		}
		if _, err := w.dec.Token(); err != nil {
			return err
		}
	case json.Delim('['):
		var et reflect.Type
		if t != nil && t.Kind() == reflect.Slice {
			et = t.Elem()
		}
		for n := 0; w.dec.More(); n++ {
			if err := w.value(joinPath(path, "["+strconv.Itoa(n)+"]"), canon, et); err != nil {
				return err
			}
		}
		if _, err := w.dec.Token(); err != nil {
			return err
		}
	default:
		w.values[i].raw = string(w.data[start:w.dec.InputOffset()])
	}
	w.values[i].end = w.dec.InputOffset()
	return nil
}

type jsonFieldInfo struct {
	name string
	t    reflect.Type
}

// jsonField finds the field of struct t that encoding/json matches with
// key (exactly, else ignoring case).
func jsonField(t reflect.Type, key string) (jsonFieldInfo, bool) {
	var fold *jsonFieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return jsonFieldInfo{name, f.Type}, true
		}
		if fold == nil && strings.EqualFold(name, key) {
			fold = &jsonFieldInfo{name, f.Type}
		}
	}
	if fold != nil {
		return *fold, true
	}
	return jsonFieldInfo{}, false
}
