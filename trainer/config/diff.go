package config

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Difference is one leaf key whose value differs between two configs.
type Difference struct {
	Key string // dotted key path as in the YAML file, list items by index: "train.optim.betas.1"
	Was string // the first config's value as JSON text ("/a/x.txt" with its quotes), or "absent"
	Now string // the second config's, likewise
}

// Diff lists the keys whose values differ between two configs, sorted by key path. The
// JSON names of Run's fields are its YAML keys, so the paths are the ones users write.
func Diff(was, now Run) []Difference {
	a, err := json.Marshal(was)
	if err != nil {
		panic("config: Run cannot fail to encode: " + err.Error())
	}
	b, err := json.Marshal(now)
	if err != nil {
		panic("config: Run cannot fail to encode: " + err.Error())
	}
	return DiffJSON(a, b)
}

// DiffJSON lists the leaf key paths whose values differ between two JSON documents,
// sorted by path: Diff for configs known only by their JSON (a checkpoint's state file
// keeps its config so).
func DiffJSON(was, now json.RawMessage) []Difference {
	a, b := map[string]string{}, map[string]string{}
	flatten(was, "", a)
	flatten(now, "", b)
	var out []Difference
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			vb = "absent"
		}
		if va != vb {
			out = append(out, Difference{Key: k, Was: va, Now: vb})
		}
	}
	for k, vb := range b {
		if _, ok := a[k]; !ok {
			out = append(out, Difference{Key: k, Was: "absent", Now: vb})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// flatten records every leaf of a JSON document under its dotted path (list items by
// index). Objects and lists are walked; anything else is kept as its JSON text.
func flatten(js json.RawMessage, prefix string, out map[string]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(js, &obj) == nil && obj != nil {
		for k, v := range obj {
			flatten(v, join(k), out)
		}
		return
	}
	var list []json.RawMessage
	if json.Unmarshal(js, &list) == nil && list != nil {
		for i, v := range list {
			flatten(v, join(fmt.Sprint(i)), out)
		}
		return
	}
	out[prefix] = string(js)
}
