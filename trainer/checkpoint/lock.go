package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herdml/herd/internal/usererr"
)

// LockFile is the name of the lock file in a run's checkpoint folder.
const LockFile = ".lock"

// ErrLocked is wrapped by Lock's error when another owner holds the run's folder. That
// error is also a user error (usererr.Is): the CLI reports it and exits 2, while the
// orchestrator, which retries it, tells it apart with errors.Is.
var ErrLocked = errors.New("run folder locked")

// Lock is an exclusive hold on a run's checkpoint folder: one trainer at a time writes
// checkpoints there, sets damaged ones aside and applies retention. It is an flock(2) on
// <folder>/.lock, which the kernel releases when the holder's process ends, however it
// ends (kill -9 included), so a stale lock file never blocks anyone. The file holds one
// line naming the holder, for the message of whoever is refused.
type Lock struct{ f *os.File }

// LockDir takes the lock of the run folder root, creating the folder if needed, and
// writes the holder line: this process's pid, host, start time and command. If another
// process (or another Lock in this one) holds it, it fails at once with a user error that
// wraps ErrLocked and names the folder and the holder.
func LockDir(root string) (*Lock, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(root, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	held, err := flock(f)
	if err != nil || held {
		defer f.Close()
		if err != nil {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		return nil, lockedError(root, f)
	}
	if err := writeHolder(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Close releases the lock, first emptying the holder line so that it never names a
// process that no longer holds the folder.
func (l *Lock) Close() error {
	terr := l.f.Truncate(0)
	return errors.Join(terr, l.f.Close())
}

// writeHolder replaces the lock file's content with the holder line.
func writeHolder(f *os.File) error {
	host, err := os.Hostname()
	if err != nil {
		host = "?"
	}
	line := fmt.Sprintf("pid %d on host %s since %s, command %s\n",
		os.Getpid(), host, time.Now().UTC().Format(time.RFC3339), strings.Join(os.Args, " "))
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt([]byte(line), 0)
	return err
}

// lockedError is the user error for a run folder that another owner holds.
func lockedError(root string, f *os.File) error {
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	holder := strings.TrimSpace(string(b))
	if holder == "" {
		holder = "another process, starting up"
	}
	return &locked{usererr.New(root, "run folder in use: held by %s; wait for it to finish or stop it, or train with another --out or run name", holder)}
}

// locked is a user error that also wraps ErrLocked.
type locked struct{ error }

func (e *locked) Unwrap() []error { return []error{e.error, ErrLocked} }
