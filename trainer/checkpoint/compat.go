package checkpoint

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	herdconfig "github.com/herdml/herd/trainer/config"
)

// Compatible refuses to continue from checkpoint name (whose state is st) with a different
// configuration or parametrization: the weights would silently be trained under other
// rules and the run would no longer match an uninterrupted one. config is the canonical
// JSON of the run as it is now and configHash its trajectory hash; tableHash is the MetaP
// table's hash. Only the hashes decide; the error is a user error that names the keys
// that differ between the two configs, with both values.
//
// The one exception is a change the run's history records: allowed is the run's lineage
// (what `herd resume` changed), and a config that differs from the checkpoint's only in
// resumable keys (config.Resumable), each now at the value the latest allowed change of
// that key gave it, is accepted. Compatible then returns those differences as changes at
// the checkpoint's step, for the lineage of the checkpoints to come, and checks the
// parametrization against the table the checkpoint's own config gives, since a new LR or
// horizon changes the table on purpose.
func Compatible(s Storage, name string, st State, config json.RawMessage, configHash, tableHash string, allowed []herdconfig.Change) ([]herdconfig.Change, error) {
	at := Where(s, name, StateFile)
	if st.ConfigHash == configHash {
		if st.TableHash != tableHash {
			return nil, tableChanged(at, st.TableHash, tableHash)
		}
		return nil, nil
	}
	diffs := herdconfig.DiffJSON(st.Config, config)
	if changes, ok := recorded(diffs, allowed, st.Step); ok {
		var was herdconfig.Run
		if err := json.Unmarshal(st.Config, &was); err != nil {
			return nil, usererr.New(at, "unreadable checkpoint: config: %v", err)
		}
		table, err := was.MetaPTable()
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: the MetaP table of its config: %w", name, err)
		}
		if h := table.Hash(); st.TableHash != h {
			return nil, tableChanged(at, st.TableHash, h)
		}
		return changes, nil
	}
	const show = 6
	more := ""
	if len(diffs) > show {
		more = fmt.Sprintf(" (and %d more)", len(diffs)-show)
		diffs = diffs[:show]
	}
	text := []string{"the encoding of the config"}
	if len(diffs) > 0 {
		text = text[:0]
		for _, d := range diffs {
			text = append(text, fmt.Sprintf("%s: checkpoint %s, now %s", d.Key, d.Was, d.Now))
		}
	}
	return nil, usererr.New(at, "the checkpoint was trained with another config: %s%s; resume with the checkpoint's config, or start a new run (another name or checkpoint dir)",
		strings.Join(text, "; "), more)
}

// recorded returns diffs as changes at step when each is a resumable key whose latest
// change in allowed set it to its value now.
func recorded(diffs []herdconfig.Difference, allowed []herdconfig.Change, step int64) ([]herdconfig.Change, bool) {
	var out []herdconfig.Change
	for _, d := range diffs {
		now := ""
		for _, c := range allowed {
			if c.Key == d.Key {
				now = c.Now
			}
		}
		if !herdconfig.Resumable(d.Key) || now != d.Now {
			return nil, false
		}
		out = append(out, herdconfig.Change{Step: step, Key: d.Key, Was: d.Was, Now: d.Now})
	}
	return out, len(out) > 0
}

func tableChanged(at, was, now string) error {
	return usererr.New(at, "the MetaP table differs from the checkpoint's (table hash %.12s, now %.12s) although the config is the same: the parametrization rules changed; resume with the herd version that wrote it, or start a new run",
		was, now)
}
