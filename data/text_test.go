package data

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// goSrc is a small slice of real Go source: the container packages of the standard library.
const goSrc = "${GOROOT}/src/container/**/*.go"

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func rels(files []File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Rel)
	}
	return out
}

func TestGlobRecursiveAndEnv(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.go": "1", "x/b.go": "2", "x/y/c.go": "3", "x/y/c.txt": "4", "z/d.go": "5",
	})
	t.Setenv("HERD_TEST_DIR", dir)
	for _, tc := range []struct {
		pattern string
		want    []string
	}{
		{"${HERD_TEST_DIR}/**/*.go", []string{"a.go", "x/b.go", "x/y/c.go", "z/d.go"}},
		{"$HERD_TEST_DIR/x/**/*.go", []string{"b.go", "y/c.go"}},
		{dir + "/*/*.go", []string{"x/b.go", "z/d.go"}},
		{dir + "/x/**/c.*", []string{"y/c.go", "y/c.txt"}},
		{dir + "/x/y/c.txt", []string{"c.txt"}},
	} {
		files, err := Glob(tc.pattern)
		if err != nil {
			t.Fatalf("Glob(%q): %v", tc.pattern, err)
		}
		if got := rels(files); !slices.Equal(got, tc.want) {
			t.Errorf("Glob(%q) = %v, want %v", tc.pattern, got, tc.want)
		}
	}
}

func TestGlobErrorsNameThePattern(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.go": "1"})
	for _, pattern := range []string{dir + "/**/*.rs", dir + "/missing.txt", "${HERD_SURELY_UNSET_VAR}/*.go", dir + "/[/*.go"} {
		_, err := Glob(pattern)
		if !usererr.Is(err) || !strings.Contains(err.Error(), pattern) {
			t.Errorf("Glob(%q) error %v, want a user error naming the pattern", pattern, err)
		}
	}
}

func TestCorpusRowsRebuildTheFiles(t *testing.T) {
	c, err := ReadCorpus(goSrc)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Files) < 5 {
		t.Fatalf("only %d files under %s", len(c.Files), goSrc)
	}
	// the files as read independently, and where each document starts in their concatenation
	var want []byte
	starts := map[int64]bool{}
	for _, f := range c.Files {
		body, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		starts[int64(len(want))] = true
		want = append(want, body...)
	}
	const L = 97 // odd, so that rows cut documents at arbitrary places
	var got []byte
	var r Row
	rows := c.Rows(L)
	for i := int64(0); i < rows; i++ {
		c.Row(i, L, &r)
		if len(r.Tokens) != L {
			t.Fatalf("row %d has %d tokens", i, len(r.Tokens))
		}
		at := int64(0)
		for k, n := range r.Docs {
			if len(r.NoLoss) > 0 && at == int64(r.NoLoss[0]) { // padding
				if i != rows-1 || k != len(r.Docs)-1 || r.NoLoss[1] != L {
					t.Fatalf("row %d: padding %v is not the end of the last row", i, r.NoLoss)
				}
				break
			}
			// a segment starts at the row's start or at a document's start, nowhere else
			if g := i*L + at; at > 0 && !starts[g] {
				t.Fatalf("row %d: segment starts at byte %d, inside a document", i, g)
			}
			got = append(got, toBytes(r.Tokens[at:at+int64(n)])...)
			at += int64(n)
		}
		for g := i * L; g < min((i+1)*L, int64(len(want))); g++ { // every document start is a segment start
			if starts[g] && !segmentStart(r.Docs, g-i*L) {
				t.Fatalf("row %d: document starting at byte %d is not a segment", i, g)
			}
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("rows hold %d bytes that differ from the %d bytes of the files", len(got), len(want))
	}
}

func segmentStart(docs []int32, at int64) bool {
	s := int64(0)
	for _, n := range docs {
		if s == at {
			return true
		}
		s += int64(n)
	}
	return false
}

func TestBatchTargetsMaskAndPositions(t *testing.T) {
	dir := writeFiles(t, map[string]string{"1.txt": "abcde", "2.txt": "fg", "3.txt": "hijklmnopq"})
	const T = 6 // rows of 7: "abcdefg" "hijklmn" "opq"+pad
	src, err := OpenText(dir+"/*.txt", T, 3, 3, 0, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	if err := src.Next(&b); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		targets string
		mask    []float32
		pos     []int32
		doc     []int32
	}{
		"abcdef":          {"bcdefg", []float32{1, 1, 1, 1, 0, 1}, []int32{0, 1, 2, 3, 4, 0}, []int32{0, 0, 0, 0, 0, 1}},
		"hijklm":          {"ijklmn", []float32{1, 1, 1, 1, 1, 1}, []int32{0, 1, 2, 3, 4, 5}, []int32{0, 0, 0, 0, 0, 0}},
		"opq\x00\x00\x00": {"pq\x00\x00\x00\x00", []float32{1, 1, 0, 0, 0, 0}, []int32{0, 1, 2, 0, 1, 2}, []int32{0, 0, 0, 1, 1, 1}},
	}
	seen := 0
	for j := 0; j < b.B; j++ {
		s := b.Tokens[j*T : (j+1)*T]
		in := string(toBytes(s))
		w, ok := want[in]
		if !ok {
			t.Fatalf("unexpected sequence %q", in)
		}
		seen++
		if got := string(toBytes(b.Targets[j*T : (j+1)*T])); got != w.targets {
			t.Errorf("%q: targets %q, want %q", in, got, w.targets)
		}
		if got := b.Mask[j*T : (j+1)*T]; !slices.Equal(got, w.mask) {
			t.Errorf("%q: mask %v, want %v", in, got, w.mask)
		}
		if got := b.Pos[j*T : (j+1)*T]; !slices.Equal(got, w.pos) {
			t.Errorf("%q: pos %v, want %v", in, got, w.pos)
		}
		if got := b.Doc[j*T : (j+1)*T]; !slices.Equal(got, w.doc) {
			t.Errorf("%q: doc %v, want %v", in, got, w.doc)
		}
	}
	if seen != 3 || src.Info().Rows != 3 || src.Info().Tokens != 17 {
		t.Fatalf("saw %d sequences, info %+v", seen, src.Info())
	}
}

func toBytes(s []int32) []byte {
	out := make([]byte, len(s))
	for i, v := range s {
		out[i] = byte(v)
	}
	return out
}

func TestSplitsAreDisjointAndCoverEverything(t *testing.T) {
	all, err := Glob("${GOROOT}/src/**/*.go")
	if err != nil {
		t.Fatal(err)
	}
	train, eval := 0, 0
	for _, f := range all {
		tr, ev := SplitTrain.keep(f.Rel), SplitEval.keep(f.Rel)
		if tr == ev {
			t.Fatalf("%s: in train %v, in eval %v", f.Rel, tr, ev)
		}
		if ev {
			eval++
		} else {
			train++
		}
	}
	// 5% of several thousand files: the hash split is near its nominal fraction
	if frac := float64(eval) / float64(len(all)); frac < 0.03 || frac > 0.07 {
		t.Fatalf("eval split holds %.3f of %d files, want about %.2f", frac, len(all), EvalPercent/100.0)
	}
	if p, s := ParseTextPattern(goSrc + "#eval"); p != goSrc || s != SplitEval {
		t.Fatalf("ParseTextPattern: %q %v", p, s)
	}
}

func TestOpenTextBadShapes(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.txt": "hello"})
	for _, tc := range []struct {
		seq, global, micro, world int
		key                       string
	}{
		{0, 4, 2, 1, "model.seq_len"},
		{8, 0, 2, 1, "train.global_batch"},
		{8, 6, 2, 4, "train.global_batch"},
		{8, 8, 3, 2, "train.micro_batch"},
	} {
		_, err := OpenText(dir+"/a.txt", tc.seq, tc.global, tc.micro, 0, tc.world, 1)
		var ue *usererr.Error
		if !errors.As(err, &ue) || ue.Where != tc.key {
			t.Errorf("%+v: error %v, want a user error at %s", tc, err, tc.key)
		}
	}
}
