package checkpoint

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// Compatible refuses to continue from checkpoint name (whose state is st) with a different
// configuration or parametrization: the weights would silently be trained under other
// rules and the run would no longer match an uninterrupted one. config is the canonical
// JSON of the run as it is now and configHash its trajectory hash; tableHash is the MetaP
// table's hash. Only the hashes decide; the error is a user error that names the keys
// that differ between the two configs, with both values.
func Compatible(s Storage, name string, st State, config json.RawMessage, configHash, tableHash string) error {
	at := where(s, name, StateFile)
	if st.ConfigHash != configHash {
		diffs := diffJSON(st.Config, config)
		const show = 6
		more := ""
		if len(diffs) > show {
			more = fmt.Sprintf(" (and %d more)", len(diffs)-show)
			diffs = diffs[:show]
		}
		if len(diffs) == 0 {
			diffs = []string{"the encoding of the config"}
		}
		return usererr.New(at, "the checkpoint was trained with another config: %s%s; resume with the checkpoint's config, or start a new run (another name or checkpoint dir)",
			strings.Join(diffs, "; "), more)
	}
	if st.TableHash != tableHash {
		return usererr.New(at, "the MetaP table differs from the checkpoint's (table hash %.12s, now %.12s) although the config is the same: the parametrization rules changed; resume with the herd version that wrote it, or start a new run",
			st.TableHash, tableHash)
	}
	return nil
}

// diffJSON lists the leaf key paths whose values differ between two JSON documents, as
// "a.b.c: checkpoint X, now Y", sorted by path.
func diffJSON(was, now json.RawMessage) []string {
	a, b := map[string]string{}, map[string]string{}
	flatten(was, "", a)
	flatten(now, "", b)
	var out []string
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			vb = "absent"
		}
		if va != vb {
			out = append(out, fmt.Sprintf("%s: checkpoint %s, now %s", k, va, vb))
		}
	}
	for k, vb := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: checkpoint absent, now %s", k, vb))
		}
	}
	sort.Strings(out)
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
