package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataPackVerifyInspect(t *testing.T) {
	dir := t.TempDir()
	out, errs, status := herd(t, dir, "data", "pack", "--quiet", "--json", "--seq-len", "64",
		"--text", "${GOROOT}/src/container/**/*.go", "--out", "ds")
	if status != 0 {
		t.Fatalf("pack: status %d, %s", status, errs)
	}
	var m struct {
		Rows   int64
		Shards []struct{ Path string }
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Rows == 0 || len(m.Shards) != 1 {
		t.Fatalf("pack printed %q (%v)", out, err)
	}
	if out, errs, status := herd(t, dir, "data", "verify", "ds"); status != 0 || !strings.Contains(out, "every hash and row is good") {
		t.Fatalf("verify: status %d, %s%s", status, out, errs)
	}
	out, _, status = herd(t, dir, "data", "inspect", "ds", "--row", "0")
	if status != 0 || !strings.Contains(out, "--- row 0") || !strings.Contains(out, "Copyright") {
		t.Fatalf("inspect: status %d, %s", status, out)
	}
	shard := filepath.Join(dir, "ds", m.Shards[0].Path)
	b, _ := os.ReadFile(shard)
	b[len(b)/3] ^= 1
	os.WriteFile(shard, b, 0o644)
	_, errs, status = herd(t, dir, "data", "verify", "ds")
	if status != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, m.Shards[0].Path) {
		t.Fatalf("verify of a damaged shard: status %d, stderr %q; want 2 and one line naming the shard", status, errs)
	}
	if _, errs, status := herd(t, dir, "data", "pack", "--out", "x"); status != 2 || !strings.Contains(errs, "give exactly one input") {
		t.Fatalf("pack without input: status %d, %q", status, errs)
	}
}
