//go:build !unix

package checkpoint

import "os"

// flock does nothing where flock(2) is missing: a run folder is then not protected from a
// second owner.
func flock(*os.File) (held bool, err error) { return false, nil }
