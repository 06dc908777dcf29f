package checkpoint

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// killChildEnv, when set, makes TestKilledDuringCommit the child: it commits checkpoint
// step 2 into that folder, stops in the middle of the file named by killFileEnv, says so
// on stdout, and waits to be killed.
const (
	killChildEnv = "HERD_TEST_COMMIT_DIR"
	killFileEnv  = "HERD_TEST_COMMIT_FILE"
)

// TestKilledDuringCommit kills, with SIGKILL, a process in the middle of writing each
// file of a checkpoint: the checkpoint committed before stays the newest valid one, the
// half-written one is invisible (Latest, List), and the next Commit of the same step
// replaces its leftovers and verifies.
func TestKilledDuringCommit(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		commitAndHang(t, dir, os.Getenv(killFileEnv))
		return
	}
	for _, stop := range []string{ModelFile, OptimFile, StateFile, ManifestFile} {
		t.Run(stop, func(t *testing.T) {
			d := Dir{Root: t.TempDir()}
			if _, err := Save(d, snapshot(1, 1)); err != nil {
				t.Fatal(err)
			}
			killWhileCommitting(t, d.Root, stop, nil)

			if tmp, _ := filepath.Glob(filepath.Join(d.Root, ".tmp-*")); len(tmp) == 0 {
				t.Fatalf("the child left no temporary folder: it was not killed mid-commit")
			}
			name, warnings, err := Latest(d)
			if err != nil || name != Name(1) || len(warnings) != 0 {
				t.Fatalf("after a kill in %s: Latest = %q, %v, %v; want %s and no warnings", stop, name, warnings, err, Name(1))
			}
			if names, _ := d.List(); len(names) != 1 {
				t.Errorf("List after the kill: %v, want only %s", names, Name(1))
			}
			if _, err := Save(d, snapshot(2, 2)); err != nil {
				t.Fatal(err)
			}
			if name, _, err := Latest(d); err != nil || name != Name(2) {
				t.Errorf("after committing step 2 again: Latest = %q, %v", name, err)
			}
			if tmp, _ := filepath.Glob(filepath.Join(d.Root, ".tmp-*")); len(tmp) != 0 {
				t.Errorf("leftovers of the killed commit remain: %v", tmp)
			}
		})
	}
}

// commitAndHang is the child of TestKilledDuringCommit (and TestObjectsKilledDuringCommit,
// where root is a URL): it saves step 2 and, half-way through file stop, prints "writing
// <stop>" and blocks until killed.
func commitAndHang(t *testing.T, root, stop string) {
	st, err := OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	s := hangIn{Storage: st, file: stop}
	_, err = Save(s, snapshot(2, 2))
	t.Fatalf("the child's Save returned (%v) instead of hanging in %s", err, stop)
}

// hangIn is a Storage whose Commit hangs half-way through the file named file.
type hangIn struct {
	Storage
	file string
}

func (h hangIn) Commit(name string, files []File) error {
	wrapped := make([]File, len(files))
	for i, f := range files {
		wrapped[i] = f
		if f.Name == h.file {
			write := f.Write
			wrapped[i].Write = func(w io.Writer) error {
				return write(&hangHalfway{w: w, file: f.Name})
			}
		}
	}
	return h.Storage.Commit(name, wrapped)
}

// hangHalfway writes the first half of the file's first write, flushes it to the file,
// says so on stdout and sleeps until killed.
type hangHalfway struct {
	w    io.Writer
	file string
}

func (h *hangHalfway) Write(p []byte) (int, error) {
	if _, err := h.w.Write(p[:len(p)/2]); err != nil {
		return 0, err
	}
	if f, ok := h.w.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return 0, err
		}
	}
	os.Stdout.WriteString("writing " + h.file + "\n")
	time.Sleep(time.Hour)
	return 0, io.ErrShortWrite
}

// killWhileCommitting runs TestKilledDuringCommit as a child process (with env added to
// its environment) that commits step 2 into where, waits until it is in the middle of
// file stop, and kills it with SIGKILL.
func killWhileCommitting(t *testing.T, where, stop string, env []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledDuringCommit$")
	cmd.Env = append(append(os.Environ(), env...), killChildEnv+"="+where, killFileEnv+"="+stop)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "writing "+stop) {
		_ = cmd.Process.Kill()
		t.Fatalf("child said %q (%v), want it to stop in %s", line, err, stop)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}
