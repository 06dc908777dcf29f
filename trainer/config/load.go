package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/model"
)

// Load reads the run configuration at path, applies overrides and validates the result.
//
// Values are layered, later ones winning: Default(); the preset named by model.preset (from
// the file or a --set); the file's keys; then each override in sets, "key.path=value" with
// the value parsed as YAML (a scalar or a flow value such as [0.9, 0.95]). Decoding is
// strict: an unknown key, a value of the wrong type or a key given twice is an error naming
// the file (or the --set), the key path and what is allowed there. Nothing is read or
// written besides path itself.
func Load(path string, sets []string) (Run, error) {
	return LoadFrom(path, sets, nil)
}

// SourceModel returns the model config of an init.from source (pretrained.ModelConfig).
type SourceModel func(from string) (model.Config, error)

// LoadFrom is Load for a config that may start from pretrained weights: when init.from is
// set (by the file or a --set) and source is not nil, the source's model config (read by
// source) is a layer between the preset and the file's keys, so that a config naming no
// model keys gets the source's model. Whether keys the file or --set give contradict the
// source is checked where the weights are loaded (trainer.New), for every caller.
func LoadFrom(path string, sets []string, source SourceModel) (Run, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Run{}, usererr.New(path, "cannot read the config: %v", unwrapPathError(err))
	}
	return parse(path, src, sets, source)
}

// Parse is Load for a config already in memory; name stands for the file in messages.
// It reads nothing, so init.from's model is not layered in (see LoadFrom).
func Parse(name string, src []byte, sets []string) (Run, error) {
	return parse(name, src, sets, nil)
}

func parse(name string, src []byte, sets []string, source SourceModel) (Run, error) {
	file, err := parseYAML(src)
	if err != nil {
		return Run{}, usererr.New(name, "not valid YAML: %v", err)
	}
	fileLoc := func(key string) string { return name + ": " + key }
	if file != nil && file.Kind != yaml.MappingNode {
		return Run{}, usererr.New(name, "the config must be a mapping of keys (name, seed, model, data, train, metap, parallel)")
	}

	overrides, setKeys, err := parseSets(sets)
	if err != nil {
		return Run{}, err
	}

	run := Default()
	if err := applyPreset(&run, file, fileLoc, overrides, setLoc); err != nil {
		return Run{}, err
	}
	if source != nil {
		if err := applySource(&run, file, fileLoc, overrides, setLoc, source); err != nil {
			return Run{}, err
		}
	}
	if err := decodeInto(reflect.ValueOf(&run).Elem(), file, "", fileLoc); err != nil {
		return Run{}, err
	}
	for _, o := range overrides {
		if err := decodeInto(reflect.ValueOf(&run).Elem(), o, "", setLoc); err != nil {
			return Run{}, err
		}
	}
	if run.Name == "" {
		run.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	if err := run.Validate(); err != nil {
		var u *usererr.Error
		if errors.As(err, &u) {
			loc := fileLoc
			for _, k := range setKeys { // the value at fault came from a --set of it or of a key above it
				if u.Where == k || strings.HasPrefix(u.Where, k+".") || strings.HasPrefix(u.Where, k+"[") {
					loc = setLoc
				}
			}
			return Run{}, &usererr.Error{Where: loc(u.Where), What: u.What}
		}
		return Run{}, err
	}
	return run, nil
}

// setLoc names the place of a --set key in messages.
func setLoc(key string) string { return "--set " + key }

// parseSets reads --set key.path=value flags into one nested YAML mapping each, and their
// keys in order (not a map: Parse runs in workflows, where workflowcheck refuses map
// ranges).
func parseSets(sets []string) (overrides []*yaml.Node, keys []string, err error) {
	overrides = make([]*yaml.Node, len(sets))
	keys = make([]string, len(sets))
	for i, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return nil, nil, usererr.New("--set "+s, "want key.path=value, e.g. train.optim.lr=1e-3")
		}
		v, err := parseYAML([]byte(val))
		if err != nil {
			return nil, nil, usererr.New("--set "+key, "value %q is not valid YAML: %v", val, err)
		}
		if v == nil {
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
		}
		overrides[i] = nest(strings.Split(key, "."), v)
		keys[i] = key
	}
	return overrides, keys, nil
}

// applyPreset replaces run.Model by the preset that model.preset names, so that the file's
// model keys and the overrides then change it key by key. The last --set of model.preset
// wins over the file's.
func applyPreset(run *Run, file *yaml.Node, fileLoc func(string) string, overrides []*yaml.Node, setLoc func(string) string) error {
	node, loc := lookup(file, "model", "preset"), fileLoc
	for _, o := range overrides {
		if n := lookup(o, "model", "preset"); n != nil {
			node, loc = n, setLoc
		}
	}
	if node == nil {
		return nil
	}
	var name string
	if node.Kind != yaml.ScalarNode || node.Decode(&name) != nil {
		return usererr.New(loc("model.preset"), "want a preset name: %s", strings.Join(model.PresetNames(), ", "))
	}
	if name == "" {
		return nil
	}
	p, ok := model.Presets[name]
	if !ok {
		return usererr.New(loc("model.preset"), "unknown preset %q; allowed: %s", name, strings.Join(model.PresetNames(), ", "))
	}
	run.Model = p
	run.Model.Preset = name
	return nil
}

// applySource replaces run.Model by the model config of the source that init.from names
// (the last --set of it wins over the file's), read by source.
func applySource(run *Run, file *yaml.Node, fileLoc func(string) string, overrides []*yaml.Node, setLoc func(string) string, source SourceModel) error {
	node, loc := lookup(file, "init", "from"), fileLoc
	for _, o := range overrides {
		if n := lookup(o, "init", "from"); n != nil {
			node, loc = n, setLoc
		}
	}
	var from string
	if node == nil || node.Kind != yaml.ScalarNode || node.Decode(&from) != nil || from == "" {
		return nil // decoding reports a bad value with its key
	}
	m, err := source(from)
	if err != nil {
		return fmt.Errorf("%s: %w", loc("init.from"), err)
	}
	run.Model = m
	return nil
}

// parseYAML returns the top node of a one-document YAML text, or nil for an empty one.
func parseYAML(src []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		return nil, errors.New("more than one YAML document; a config is one document")
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return resolveAlias(doc.Content[0]), nil
}

// nest wraps v in one mapping per key: [a b c], v -> {a: {b: {c: v}}}.
func nest(keys []string, v *yaml.Node) *yaml.Node {
	for i := len(keys) - 1; i >= 0; i-- {
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: keys[i]}
		v = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{k, v}}
	}
	return v
}

// lookup follows keys through nested mappings and returns the value node, or nil.
func lookup(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = resolveAlias(n.Content[i+1])
			}
		}
		n = next
	}
	return n
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// decodeInto sets the fields of v that the node n names, and only those, so that values
// already in v (defaults, the preset) stay wherever the node says nothing. It walks structs
// itself rather than leaving them to yaml.v3, whose KnownFields errors name neither the key
// path nor the keys allowed there. key is n's path ("train.optim"); loc turns a key path
// into the place named in messages.
func decodeInto(v reflect.Value, n *yaml.Node, key string, loc func(string) string) error {
	n = resolveAlias(n)
	if n == nil {
		return nil
	}
	switch {
	case v.Kind() == reflect.Struct:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			return nil // "fp8:" with nothing under it keeps the defaults
		}
		names := fieldNames(v.Type())
		if n.Kind != yaml.MappingNode {
			return usererr.New(loc(key), "want a mapping with keys %s", strings.Join(names, ", "))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			sub := join(key, k)
			f := slices.Index(names, k)
			if f < 0 {
				where := "the top level"
				if key != "" {
					where = key
				}
				return usererr.New(loc(sub), "unknown key; allowed at %s: %s", where, strings.Join(names, ", "))
			}
			if seen[k] {
				return usererr.New(loc(sub), "key given twice")
			}
			seen[k] = true
			if err := decodeInto(fieldByName(v, k), n.Content[i+1], sub, loc); err != nil {
				return err
			}
		}
		return nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			v.SetZero()
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return usererr.New(loc(key), "want a list of mappings with keys %s", strings.Join(fieldNames(v.Type().Elem()), ", "))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := decodeInto(s.Index(i), e, fmt.Sprintf("%s[%d]", key, i), loc); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if err := n.Decode(v.Addr().Interface()); err != nil || truncated(n, v) {
		got := fmt.Sprintf("%q", n.Value)
		switch n.Kind {
		case yaml.MappingNode:
			got = "a mapping"
		case yaml.SequenceNode:
			got = fmt.Sprintf("a list of %d items", len(n.Content))
		}
		return usererr.New(loc(key), "want %s, got %s", describe(v.Type()), got)
	}
	return nil
}

// truncated reports whether yaml.v3 stored a fractional number such as 1.5 in the integer
// v, which it does by dropping the fraction. Whole numbers in float notation (1e3) are kept.
func truncated(n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!float" {
		return false
	}
	var f float64
	if n.Decode(&f) != nil {
		return true
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return float64(v.Int()) != f
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		return float64(v.Uint()) != f
	}
	return false
}

// describe names the values a Go type accepts, for messages.
func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "a non-negative integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Array:
		return fmt.Sprintf("a list of %d items, each %s", t.Len(), describe(t.Elem()))
	case reflect.Slice:
		return "a list, each item " + describe(t.Elem())
	}
	return t.String()
}

// fieldNames lists the YAML keys of a struct type in declaration order.
func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if n := yamlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

func fieldByName(v reflect.Value, name string) reflect.Value {
	for i := range v.NumField() {
		if yamlName(v.Type().Field(i)) == name {
			return v.Field(i)
		}
	}
	panic("config: no field " + name) // fieldNames listed it
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// unwrapPathError drops the path from an *os.PathError; the message names the file already.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
