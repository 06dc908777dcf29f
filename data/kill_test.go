package data

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestResumeAfterKill reads k batches in a child process, which prints its state and is
// then killed with SIGKILL; a fresh stream restored from that state must continue exactly
// like an uninterrupted one.
func TestResumeAfterKill(t *testing.T) {
	if dir := os.Getenv("HERD_DATA_CHILD"); dir != "" {
		s, err := Open(dir, testT, 8, 2, 0, 1, 21)
		if err != nil {
			t.Fatal(err)
		}
		var b Batch
		for range 7 {
			s.Next(&b)
		}
		st, _ := json.Marshal(s.State())
		fmt.Printf("%s\n", st)
		select {} // wait to be killed
	}
	dir := t.TempDir()
	packGo(t, dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestResumeAfterKill$")
	cmd.Env = append(os.Environ(), "HERD_DATA_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadBytes('\n')
	cmd.Process.Kill()
	cmd.Wait()
	var st State
	if err != nil || json.Unmarshal(line, &st) != nil {
		t.Fatalf("child printed %q (%v)", line, err)
	}
	ref, err := Open(filepath.Join(dir, ManifestName), testT, 8, 2, 0, 1, 21)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var a, b Batch
	for range 7 {
		ref.Next(&a)
	}
	resumed, err := Open(dir, testT, 8, 2, 0, 1, 21)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if err := resumed.Restore(st); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ref.Next(&a)
		resumed.Next(&b)
		if !sameBatch(&a, &b) {
			t.Fatalf("batch %d after the kill differs from the uninterrupted stream", 7+i)
		}
	}
}
