// Package npmtest installs pinned npm packages for the tests that check herd against a
// JavaScript implementation (Hugging Face's tokenizers, the Arrow project's reader). It
// is for tests only.
package npmtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu        sync.Mutex
	installed = map[string]string{} // folder -> "" once installed, else why not
)

// Prefix installs packages ("name@version", pinned so that a new release cannot change
// what a test compares) with `npm install --prefix` into folder under herd's user cache
// folder, once per process and only where one of them is missing, and returns the
// prefix: require() finds them under prefix/node_modules. It skips the test where npm is
// missing, saying why the test needs it, and fails it where the install fails.
func Prefix(t testing.TB, folder, why string, packages ...string) string {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skipf("npm not found: %s (.ci/run installs nodejs and npm)", why)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "herd", folder)
	mu.Lock()
	defer mu.Unlock()
	failed, done := installed[dir]
	if !done {
		if missing(dir, packages) {
			args := append([]string{"install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save"}, packages...)
			if out, err := exec.Command("npm", args...).CombinedOutput(); err != nil {
				failed = "npm install: " + err.Error() + "\n" + string(out)
			}
		}
		installed[dir] = failed
	}
	if failed != "" {
		t.Fatal(failed)
	}
	return dir
}

// missing reports whether a package is not installed under prefix at its pinned version.
func missing(prefix string, packages []string) bool {
	for _, p := range packages {
		at := strings.LastIndex(p, "@")
		if at <= 0 {
			return true
		}
		b, err := os.ReadFile(filepath.Join(prefix, "node_modules", filepath.FromSlash(p[:at]), "package.json"))
		var pkg struct{ Version string }
		if err != nil || json.Unmarshal(b, &pkg) != nil || pkg.Version != p[at+1:] {
			return true
		}
	}
	return false
}
