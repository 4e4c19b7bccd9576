package config

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// backendFile is a backend set file in its mapping form.
type backendFile struct {
	Backends []Backend `yaml:"backends"`
}

// ParseBackendList parses a backend set written in YAML or JSON (JSON is
// YAML): either a list of backends as a service lists them in the config
// file, or a mapping with that list under backends. Decoding is strict
// (unknown keys are errors) and each backend is validated on its own
// (address, weight; default weight 1; a backend named by DNS gets the
// checks it can have without its service); errors carry the line when it is
// known and name the entry as backends[i]. What the set must be as a whole
// (family, duplicates) is checked with its service.
func ParseBackendList(data []byte) ([]Backend, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(data, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FieldError{Reason: "empty: want a list of backends, or backends: [...]"}
	}
	root := doc.Content[0]
	var list []Backend
	prefix := "backends"
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var err error
	switch root.Kind {
	case yaml.SequenceNode:
		prefix = ""
		err = dec.Decode(&list)
	case yaml.MappingNode:
		var f backendFile
		err = dec.Decode(&f)
		list = f.Backends
	default:
		return nil, &FieldError{Line: root.Line, Reason: "want a list of backends, or backends: [...]"}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		e := yamlError(data, err)
		var fe *FieldError
		if errors.As(e, &fe) && prefix == "" {
			// Paths of a bare list start at the index: name them as the
			// mapping form and the API do.
			if strings.HasPrefix(fe.Path, "[") {
				fe.Path = "backends" + fe.Path
			}
			fe.Reason = strings.Replace(fe.Reason, " in [", " in backends[", 1)
		}
		return nil, e
	}
	idx := newYAMLIndex(data)
	if list == nil {
		list = []Backend{}
	}
	for i := range list {
		at := joinPath(prefix, "["+strconv.Itoa(i)+"]")
		if err := list[i].normalizeAlone(); err != nil {
			var fe *FieldError
			if !errors.As(under(at, err), &fe) {
				return nil, err
			}
			fe.Line = idx.lineOf(fe.Path)
			if prefix == "" {
				fe.Path = "backends" + fe.Path
			}
			return nil, fe
		}
	}
	return list, nil
}
