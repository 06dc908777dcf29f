// Package usererr marks errors that are the user's to fix: a bad config key, a missing or
// corrupt shard, an unreadable checkpoint. The CLI prints them on one line and exits with
// status 2; the orchestrator makes them non-retryable. Everything else is an internal error
// and carries its context with fmt.Errorf("...: %w", err).
package usererr

import (
	"errors"
	"fmt"
)

// Error is a user's mistake: what is wrong, where (file, key path, row), and what to do.
type Error struct {
	Where string // file, "file: key.path", "shard x.arrow row 17"; may be empty
	What  string // what is wrong and what is allowed
}

func (e *Error) Error() string {
	if e.Where == "" {
		return e.What
	}
	return e.Where + ": " + e.What
}

// New returns a user error located at where.
func New(where, format string, args ...any) error {
	return &Error{Where: where, What: fmt.Sprintf(format, args...)}
}

// Is reports whether err, or any error it wraps, is a user error.
func Is(err error) bool {
	var u *Error
	return errors.As(err, &u)
}
