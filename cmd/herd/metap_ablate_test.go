package main

import (
	"encoding/json"
	"testing"
)

// `metap.ablate` from the command line: an ablated rule changes the table and its hash,
// and an unknown rule is a one-line user error naming the key and what is allowed.
func TestMetaPAblateCLI(t *testing.T) {
	dir := "../../examples"
	sets := []string{"--set", "metap.mode=metap", "--set", "metap.base.d_model=32"}
	hash := func(extra ...string) string {
		t.Helper()
		stdout, stderr, status := herd(t, dir, append(append([]string{"metap", "table", "asha-proxy.yaml", "--json"}, sets...), extra...)...)
		if status != 0 {
			t.Fatalf("status %d: %s", status, stderr)
		}
		var out struct{ Hash string }
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.Hash == "" {
			t.Fatalf("--json: %v, hash %q in %s", err, out.Hash, stdout)
		}
		return out.Hash
	}
	if hash() == hash("--set", "metap.ablate=[readout_mult]") {
		t.Error("ablating the readout multiplier left the table's hash unchanged")
	}
	stdout, stderr, status := herd(t, dir, append(append([]string{"metap", "table", "asha-proxy.yaml"}, sets...), "--set", "metap.ablate=[readout]")...)
	wantUserError(t, stdout, stderr, status, "metap.ablate[0]", `"readout"`, "readout_mult")
}
