package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
)

// --elastic-wait: a negative wait is a user error of herd run and herd sweep, found before
// anything is read or written; `herd status` shows an elastic group's world size and
// every resize with its step and reason.
func TestElasticWait(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for _, args := range [][]string{
		{"run", "run.yaml", "--elastic-wait", "-1s", "--state-dir", state},
		{"sweep", "sweep.yaml", "--elastic-wait", "-1s", "--state-dir", state},
	} {
		stdout, stderr, status := herd(t, dir, args...)
		wantUserError(t, stdout, stderr, status, "--elastic-wait", "got -1s")
		if _, err := os.Stat(state); err == nil {
			t.Errorf("herd %s wrote the state dir", strings.Join(args, " "))
		}
	}

	var out strings.Builder
	at := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	printStatus(&out, client.Status{Progress: workflows.Progress{Name: "r", State: workflows.StateRunning, Step: 12, Steps: 20,
		World: 2, Resizes: []workflows.Resize{{From: 4, To: 2, Step: 5, Reason: "only 3 of 4 ranks reserved", Time: at}}}})
	for _, want := range []string{`(?m)^ranks +2, below parallel.data`, `(?m)^resize +4 → 2 ranks at step 5: only 3 of 4 ranks reserved$`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("herd status:\n%s\nwant a line matching %s", out.String(), want)
		}
	}
}
