package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// wantLocked checks that err refuses the run folder root to a second owner: a user error
// wrapping ErrLocked that names the folder and the holder's pid.
func wantLocked(t *testing.T, err error, root string, pid int) {
	t.Helper()
	if !errors.Is(err, ErrLocked) || !usererr.Is(err) {
		t.Fatalf("second lock: %v; want a user error wrapping ErrLocked", err)
	}
	for _, want := range []string{root, fmt.Sprintf("held by pid %d on host ", pid), " since ", ", command "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// A run folder has one owner at a time, in this process or another; closing the lock
// releases it.
func TestLockIsExclusive(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run")
	l, err := LockDir(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(root)
	wantLocked(t, err, root, os.Getpid())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = LockDir(root)
	if err != nil {
		t.Fatalf("lock after the holder closed it: %v", err)
	}
	l.Close()
	if names, err := (Dir{Root: root}).List(); err != nil || len(names) != 0 {
		t.Errorf("the lock file is listed as a checkpoint: %v, %v", names, err)
	}
}

// A holder killed with SIGKILL leaves its lock file behind, but not its lock: the kernel
// releases an flock with the process.
func TestLockReleasedWhenHolderKilled(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "HERD_TEST_LOCK="+root)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("helper said %q (%v), want it to hold the lock", line, err)
	}

	_, err = LockDir(root)
	wantLocked(t, err, root, cmd.Process.Pid)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if b, err := os.ReadFile(filepath.Join(root, LockFile)); err != nil || len(b) == 0 {
		t.Fatalf("the dead holder's lock file: %q, %v; want it left behind", b, err)
	}
	l, err := LockDir(root)
	if err != nil {
		t.Fatalf("lock after the holder was killed: %v", err)
	}
	l.Close()
}

// TestLockHelperProcess is the holder that TestLockReleasedWhenHolderKilled kills: it
// locks the folder in $HERD_TEST_LOCK, says so, and waits for its stdin to close.
func TestLockHelperProcess(t *testing.T) {
	root := os.Getenv("HERD_TEST_LOCK")
	if root == "" {
		t.Skip("run by TestLockReleasedWhenHolderKilled")
	}
	if _, err := LockDir(root); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
}
