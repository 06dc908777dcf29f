// Command gochat writes the fine-tuning demo's chat data (make finetune) from the Go
// standard library: one conversation per documented function whose signature fits on one
// line, the user giving its doc comment as written in the source and the assistant
// answering with its signature. Methods are left out: their receiver's name and type are
// not in the doc comment, so their signature cannot be told from it. examples/gochat/tokenizer_config.json renders a
// conversation as the source reads: the comment, then "func ... {" and a newline.
//
// Whole packages are held out for evaluation: those whose import path hashes (FNV-1a) to
// 0 mod -eval-every, so that no evaluated function's package, siblings or receiver types
// were in the fine-tuning data. The output is the same on every run for the same sources.
//
//	go run ./tools/gochat -out DIR   writes DIR/train.jsonl and DIR/eval.jsonl
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

func main() {
	src := flag.String("src", filepath.Join(runtime.GOROOT(), "src"), "the Go sources to read")
	out := flag.String("out", "", "folder to write train.jsonl and eval.jsonl to")
	evalEvery := flag.Uint("eval-every", 10, "hold out the packages whose path hashes to 0 mod this")
	maxBytes := flag.Int("max-bytes", 256, "leave out a conversation that renders to more bytes (the byte model's seq_len)")
	evalMax := flag.Int("eval-max", 200, "write at most this many evaluation conversations, spread over the held-out set")
	flag.Parse()
	if *out == "" || *evalEvery == 0 {
		fmt.Fprintln(os.Stderr, "gochat: -out DIR is required, and -eval-every must be positive")
		os.Exit(2)
	}
	if err := run(*src, *out, uint32(*evalEvery), *maxBytes, *evalMax); err != nil {
		fmt.Fprintln(os.Stderr, "gochat:", err)
		os.Exit(1)
	}
}

// pair is one conversation: a doc comment and the signature it documents.
type pair struct{ doc, sig string }

func run(src, out string, evalEvery uint32, maxBytes, evalMax int) error {
	var train, eval []pair
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); name == "testdata" || name == "vendor" {
			return filepath.SkipDir
		}
		pairs, err := dirPairs(path, maxBytes)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		h := fnv.New32a()
		h.Write([]byte(filepath.ToSlash(rel)))
		if h.Sum32()%evalEvery == 0 {
			eval = append(eval, pairs...)
		} else {
			train = append(train, pairs...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(eval) > evalMax { // every k-th, so that every held-out package can appear
		k := (len(eval) + evalMax - 1) / evalMax
		var kept []pair
		for i := 0; i < len(eval); i += k {
			kept = append(kept, eval[i])
		}
		eval = kept
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for name, pairs := range map[string][]pair{"train.jsonl": train, "eval.jsonl": eval} {
		if err := write(filepath.Join(out, name), pairs); err != nil {
			return err
		}
	}
	fmt.Printf("gochat: %d training and %d evaluation conversations in %s\n", len(train), len(eval), out)
	return nil
}

// dirPairs returns the pairs of the non-test files of one folder, in file order: exported
// functions (not methods) with a body and a doc comment whose signature (from "func" to the
// body's brace) is one line, and whose conversation renders to at most maxBytes.
func dirPairs(dir string, maxBytes int) ([]pair, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var pairs []pair
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, text, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			continue // a file of a deliberately broken package, or for another Go version
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Body == nil || fn.Doc == nil || !fn.Name.IsExported() {
				continue
			}
			doc := string(text[fset.Position(fn.Doc.Pos()).Offset:fset.Position(fn.Doc.End()).Offset])
			sig := strings.TrimSpace(string(text[fset.Position(fn.Pos()).Offset:fset.Position(fn.Body.Lbrace).Offset]))
			if strings.Contains(sig, "\n") || !strings.HasPrefix(doc, "//") || len(doc)+len(sig)+4 > maxBytes {
				continue
			}
			pairs = append(pairs, pair{doc, sig})
		}
	}
	return pairs, nil
}

// write writes pairs as chat JSONL.
func write(path string, pairs []pair) error {
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, p := range pairs {
		if err := enc.Encode(map[string][]message{"messages": {{"user", p.doc}, {"assistant", p.sig}}}); err != nil {
			return err
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
