package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxConfigBytes bounds the configuration file; a real one is a few KiB.
const maxConfigBytes = 1 << 20

// loadConfigFile reads a YAML file onto cfg, which already holds the
// defaults: keys present in the file replace them, absent keys keep them.
func loadConfigFile(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: config file: %w", ErrConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return fmt.Errorf("%w: config file %s: %w", ErrConfig, path, err)
	}
	if len(data) > maxConfigBytes {
		return fmt.Errorf("%w: config file %s: larger than %d bytes", ErrConfig, path, maxConfigBytes)
	}
	if err := decodeConfig(data, cfg); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// decodeConfig decodes strict YAML onto cfg. Unknown keys and values of the
// wrong type are reported with their full dotted key and line, all at once,
// and cfg is left untouched on error. The final decode uses
// yaml.Decoder.KnownFields(true) as a second guard.
func decodeConfig(data []byte, cfg *Config) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: defaults only
		}
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: more than one YAML document (remove the second ---)", ErrConfig)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%w: line %d: the top level must be a mapping of keys (server_name: ..., client: ...)", ErrConfig, root.Line)
	}
	var errs []error
	checkNode(root, reflect.TypeFor[Config](), "", &errs, 0)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	next := *cfg
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&next); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	*cfg = next
	return nil
}

// maxYAMLDepth bounds recursion on hostile input (aliases can nest).
const maxYAMLDepth = 32

// checkNode walks a YAML node against the Go type it will be decoded into,
// reporting unknown keys (with the keys that are allowed at that level) and
// values that do not decode into their field's type.
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *[]error, depth int) {
	if depth > maxYAMLDepth {
		*errs = append(*errs, &fieldError{Key: keyOrTop(path), Msg: "nested too deeply"})
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if t.Kind() == reflect.Struct {
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, &fieldError{Key: keyOrTop(path), Msg: fmt.Sprintf("line %d: must be a mapping of keys (%s)", n.Line, strings.Join(yamlKeys(t), ", "))})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			full := joinKey(path, k.Value)
			f, ok := yamlField(t, k.Value)
			if !ok {
				*errs = append(*errs, &fieldError{Key: full, Msg: fmt.Sprintf("line %d: unknown key %q; known keys here: %s", k.Line, k.Value, strings.Join(yamlKeys(t), ", "))})
				continue
			}
			checkNode(val, f.Type, full, errs, depth+1)
		}
		return
	}
	if t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode {
		for i, el := range n.Content {
			checkNode(el, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs, depth+1)
		}
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		*errs = append(*errs, &fieldError{Key: keyOrTop(path), Msg: fmt.Sprintf("line %d: %s", n.Line, yamlErrText(err, t))})
	}
}

func keyOrTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// yamlField finds the struct field whose yaml tag is name.
func yamlField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tagName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlKeys lists the yaml keys of a struct type, sorted.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if n := tagName(t.Field(i)); n != "" && n != "-" {
			keys = append(keys, n)
		}
	}
	slices.Sort(keys)
	return keys
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// yamlErrText turns a yaml.v3 type error into "expected T, got `v`".
func yamlErrText(err error, t reflect.Type) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
			msg = rest
		}
		return fmt.Sprintf("%s (expected %s)", msg, typeWord(t))
	}
	return err.Error()
}

// typeWord names a Go type the way a YAML author thinks of it.
func typeWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 30s or 1h"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32:
		return "a number"
	case t.Kind() == reflect.Slice:
		return "a list"
	}
	return t.String()
}
