package data

import (
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// File is one input file found by Glob.
type File struct {
	Path string // as opened
	Rel  string // slash-separated, relative to the pattern's fixed leading folder
	Size int64
}

// Glob expands environment variables in pattern (${GOROOT} falls back to `go env GOROOT`
// when unset, so the Go sources are reachable on any machine with Go), then returns the
// regular files it matches, sorted by path. Besides filepath.Match syntax, a path element
// "**" matches zero or more folders. A pattern that matches nothing is a user error.
func Glob(pattern string) ([]File, error) {
	expanded, err := expandEnv(pattern)
	if err != nil {
		return nil, err
	}
	expanded = filepath.ToSlash(filepath.Clean(expanded))
	segs := strings.Split(expanded, "/")
	fixed := 0 // leading segments without wildcards form the folder to walk
	for fixed < len(segs) && !hasMeta(segs[fixed]) {
		fixed++
	}
	if fixed == len(segs) { // a plain file name
		fi, err := os.Stat(expanded)
		if err != nil || !fi.Mode().IsRegular() {
			return nil, usererr.New(pattern, "no such file; give a file, a glob such as dir/**/*.txt, or a shard manifest")
		}
		return []File{{Path: filepath.FromSlash(expanded), Rel: path.Base(expanded), Size: fi.Size()}}, nil
	}
	pat := segs[fixed:]
	for _, s := range pat {
		if _, err := path.Match(s, ""); err != nil {
			return nil, usererr.New(pattern, "bad glob element %q: %v", s, err)
		}
	}
	root := strings.Join(segs[:fixed], "/")
	switch {
	case root == "" && strings.HasPrefix(expanded, "/"):
		root = "/"
	case root == "":
		root = "."
	}
	var files []File
	err = filepath.WalkDir(filepath.FromSlash(root), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == filepath.FromSlash(root) {
				return usererr.New(pattern, "cannot read folder %s: %v", root, err)
			}
			return err
		}
		rel, _ := filepath.Rel(filepath.FromSlash(root), p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && !matchPrefix(pat, strings.Split(rel, "/")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !matchSegs(pat, strings.Split(rel, "/")) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, File{Path: p, Rel: rel, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		where := pattern
		if expanded != pattern {
			where += " (" + expanded + ")"
		}
		return nil, usererr.New(where, "matches no file; check the path, or use ** to match files in sub-folders")
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// matchSegs reports whether path segments name match pattern segments pat.
func matchSegs(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if matchSegs(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, _ := path.Match(pat[0], name[0])
	return ok && matchSegs(pat[1:], name[1:])
}

// matchPrefix reports whether a folder with segments dir may contain matches of pat, so
// that Glob skips folders that cannot.
func matchPrefix(pat, dir []string) bool {
	if len(dir) == 0 {
		return len(pat) > 0
	}
	if len(pat) == 0 {
		return false
	}
	if pat[0] == "**" {
		return true
	}
	ok, _ := path.Match(pat[0], dir[0])
	return ok && matchPrefix(pat[1:], dir[1:])
}

// expandEnv replaces $VAR and ${VAR}. An unset variable is a user error, except GOROOT.
func expandEnv(s string) (string, error) {
	var missing string
	out := os.Expand(s, func(name string) string {
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		if name == "GOROOT" {
			if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
				return strings.TrimSpace(string(out))
			}
		}
		if missing == "" {
			missing = name
		}
		return ""
	})
	if missing != "" {
		return "", usererr.New(s, "environment variable %s is not set", missing)
	}
	return out, nil
}
