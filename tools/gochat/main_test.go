package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun: from a small source tree, exactly the exported, documented functions (not
// methods) with a body and a one-line signature become conversations, in source order;
// test files, testdata and conversations over -max-bytes are left out; and a package's
// conversations are all in train.jsonl or all in eval.jsonl.
func TestRun(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"p/p.go": `package p

// Kept is kept.
// Two lines of doc.
func Kept(a int) string { return "" }

// T is a type.
type T struct{}

// Len is a method.
// Two lines of doc.
func (t *T) Len() int { return 0 }

func Undocumented() {}

// unexported is not.
func unexported() {}

// Long has a signature on two lines.
func Long(a int,
	b int) {
}

// TooLong has a doc comment that makes the conversation longer than max-bytes, which is the model's seq_len.
func TooLong() {}
`,
		"p/p_test.go":          "package p\n\n// InTest is in a test.\nfunc InTest() {}\n",
		"p/testdata/x/x.go":    "package x\n\n// InTestdata is not read.\nfunc InTestdata() {}\n",
		"q/q.go":               "package q\n\n// Q is in package q.\nfunc Q() {}\n",
		"q/r/r.go":             "package r\n\n// R is in package q/r.\nfunc R() error { return nil }\n",
		"broken/b.go":          "package broken\n\nfunc (\n",
		"s/t/u/deep.go":        "package u\n\n// Deep is deep.\nfunc Deep() {}\n",
		"s/t/u/notes.txt":      "not Go",
		"v/vendored/vendor.go": "package vendored\n",
	}
	for name, text := range files {
		path := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	if err := run(src, out, 2, 100, 100); err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]string{ // a conversation's text -> its package
		`{"messages":[{"role":"user","content":"// Kept is kept.\n// Two lines of doc."},{"role":"assistant","content":"func Kept(a int) string"}]}`: "p",
		`{"messages":[{"role":"user","content":"// Q is in package q."},{"role":"assistant","content":"func Q()"}]}`:                                 "q",
		`{"messages":[{"role":"user","content":"// R is in package q/r."},{"role":"assistant","content":"func R() error"}]}`:                         "q/r",
		`{"messages":[{"role":"user","content":"// Deep is deep."},{"role":"assistant","content":"func Deep()"}]}`:                                   "s/t/u",
	}
	where := map[string]string{} // package -> file
	n := 0
	for _, name := range []string{"train.jsonl", "eval.jsonl"} {
		raw, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
			if line == "" {
				continue
			}
			pkg, ok := pkgs[line]
			if !ok {
				t.Errorf("%s holds an unexpected conversation %s", name, line)
				continue
			}
			n++
			if f, seen := where[pkg]; seen && f != name {
				t.Errorf("package %s is in both files", pkg)
			}
			where[pkg] = name
		}
	}
	if n != len(pkgs) {
		t.Errorf("%d conversations, want %d", n, len(pkgs))
	}
	held := 0
	for _, f := range where {
		if f == "eval.jsonl" {
			held++
		}
	}
	if held == 0 || held == len(where) {
		t.Errorf("packages by file: %v; want some held out (-eval-every 2), not all", where)
	}
}
