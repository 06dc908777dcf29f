package checkpoint

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// Compatible refuses to continue from checkpoint name (whose state is st) with a different
// configuration or parametrization: the weights would silently be trained under other
// rules and the run would no longer match an uninterrupted one. config is the canonical
// JSON of the run as it is now and configHash its trajectory hash; tableHash is the MetaP
// table's hash. Only the hashes decide; the error is a user error that names the keys
// that differ between the two configs, with both values.
func Compatible(s Storage, name string, st State, config json.RawMessage, configHash, tableHash string) error {
	at := Where(s, name, StateFile)
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
	var out []string
	for _, d := range config.DiffJSON(was, now) {
		out = append(out, fmt.Sprintf("%s: checkpoint %s, now %s", d.Key, d.Was, d.Now))
	}
	return out
}
