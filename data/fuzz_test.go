package data

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// FuzzParseManifest feeds the dataset manifest reader arbitrary bytes, seeded with a
// manifest a pack wrote. It never panics; what it refuses is a user error naming the
// manifest; what it accepts has the invariants readers rely on (shards that sum to the
// rows, paths inside the folder) and round-trips through JSON.
//
//	go test -run '^$' -fuzz '^FuzzParseManifest$' -fuzztime 60s ./data/
func FuzzParseManifest(f *testing.F) {
	dir := f.TempDir()
	if _, err := Pack(manyDocs(10, nil), smallPack(dir)); err != nil {
		f.Fatal(err)
	}
	packed, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(packed)
	f.Add(bytes.Replace(packed, []byte(`"shard-00001.arrow"`), []byte(`"../shard-00001.arrow"`), 1))
	f.Add(bytes.Replace(packed, []byte(`"rows": 50`), []byte(`"rows": 9223372036854775807`), 1))
	sha := strings.Repeat("ab", 32)
	f.Add([]byte(`{"format": "herd-tokens", "version": 1, "seq_len": 4, "vocab_size": 256, "batch_rows": 2, "rows": -9223372036854775807,
		"shards": [{"path": "a", "rows": 9223372036854775807, "bytes": 1, "sha256": "` + sha + `"},
		           {"path": "b", "rows": 2, "bytes": 1, "sha256": "` + sha + `"}]}`)) // rows that wrap around
	f.Add([]byte(`{"format": "herd-tokens", "version": 1, "shards": null}`))
	f.Add([]byte(`{"format": "herd-tokens", "unknown": 1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseManifest("ds/manifest.json", body)
		if err != nil {
			if !usererr.Is(err) || !strings.HasPrefix(err.Error(), "ds/manifest.json: ") {
				t.Fatalf("error %v is not a user error naming the manifest", err)
			}
			return
		}
		var rows int64
		for _, sh := range m.Shards {
			if sh.Rows <= 0 || rows+sh.Rows < rows || !filepath.IsLocal(filepath.FromSlash(sh.Path)) {
				t.Fatalf("accepted a bad shard entry %+v after %d rows", sh, rows)
			}
			rows += sh.Rows
		}
		if rows != m.Rows || m.SeqLen <= 0 || m.BatchRows <= 0 {
			t.Fatalf("accepted a manifest of %d rows whose shards hold %d (seq_len %d, batch_rows %d)", m.Rows, rows, m.SeqLen, m.BatchRows)
		}
		m.Hash()
		m.Schema()
		out, err := json.Marshal(&m)
		if err != nil {
			t.Fatalf("the accepted manifest does not encode: %v", err)
		}
		again, err := ParseManifest("ds/manifest.json", out)
		if err != nil || again.Hash() != m.Hash() {
			t.Fatalf("the accepted manifest does not round-trip: %v\n%s", err, out)
		}
	})
}

// FuzzJSONLText feeds the JSONL line parser of `herd data pack --jsonl` arbitrary lines
// and field names, seeded with real rows. It never panics; a blank line or a null field
// is skipped; what
// it refuses is a user error naming file and line; what it accepts is the line's string
// field.
//
//	go test -run '^$' -fuzz '^FuzzJSONLText$' -fuzztime 60s ./data/
func FuzzJSONLText(f *testing.F) {
	for _, d := range docs {
		line, _ := json.Marshal(map[string]string{"text": d, "id": "7"})
		f.Add(line, "text")
	}
	for _, line := range []string{"", "  \t", `{"body": "no text"}`, `{"text": 1}`, `[1, 2]`, `{"text": "a", "text": "b"}`,
		`{"text": "\ud800 lone surrogate"}`, `{"text": null}`, `{"text": "x"} trailing`, "\xff\xfe"} {
		f.Add([]byte(line), "text")
	}
	f.Fuzz(func(t *testing.T, line []byte, field string) {
		text, ok, err := JSONLText("in.jsonl:3", line, field)
		switch {
		case err != nil:
			if !usererr.Is(err) || !strings.HasPrefix(err.Error(), "in.jsonl:3: ") || ok {
				t.Fatalf("error %v (ok %v) is not a user error naming the line", err, ok)
			}
		case !ok:
			var rec map[string]any
			if len(bytes.TrimSpace(line)) != 0 && (json.Unmarshal(line, &rec) != nil || rec[field] != nil) {
				t.Fatalf("skipped the line %q, neither blank nor with a null %q", line, field)
			}
		default:
			var rec map[string]any
			if json.Unmarshal(line, &rec) != nil {
				t.Fatalf("accepted %q, which is not a JSON object", line)
			}
			if s, isString := rec[field].(string); !isString || s != string(text) {
				t.Fatalf("accepted %q as %q, but its field %q is %#v", line, text, field, rec[field])
			}
		}
	})
}

// FuzzReadCaptions feeds the caption-list reader of `herd data pack --images` arbitrary
// CSV or JSONL lists, seeded with real ones. It never panics; what it refuses is a user
// error naming the list (and line); every pair it accepts names a file.
//
//	go test -run '^$' -fuzz '^FuzzReadCaptions$' -fuzztime 60s ./data/
func FuzzReadCaptions(f *testing.F) {
	f.Add([]byte("file,caption\nimg/a.png,a grey ramp\nimg/b.jpg,\"a red square, scaled\"\n"), true)
	f.Add([]byte("file,caption,extra\na.png,x,y\nb.png\n"), true)
	f.Add([]byte("caption,file\n"), true)
	f.Add([]byte("{\"file\": \"img/a.png\", \"caption\": \"a grey ramp\"}\n\n{\"file\": \"b.jpg\"}\n"), false)
	f.Add([]byte("{\"caption\": \"no file\"}\n[1]\n"), false)
	f.Fuzz(func(t *testing.T, list []byte, isCSV bool) {
		name := "caps.jsonl"
		if isCSV {
			name = "caps.csv"
		}
		err := readCaptions(bytes.NewReader(list), name, func(where, file, caption string) error {
			if file == "" && !isCSV {
				t.Fatalf("%s: accepted a JSONL line without a file", where)
			}
			return nil
		})
		if err != nil && (!usererr.Is(err) || !strings.HasPrefix(err.Error(), name)) {
			t.Fatalf("error %v is not a user error naming the list", err)
		}
	})
}
