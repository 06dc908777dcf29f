package generate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// TestConfigStops: eos_token_id is one id or a list (as Llama 3's); no file or no key is
// no stop; anything else is a user error naming the file and the key.
func TestConfigStops(t *testing.T) {
	for _, c := range []struct {
		file string // "" = no file
		want []int32
		err  string
	}{
		{"", nil, ""},
		{`{"bos_token_id": 1}`, nil, ""},
		{`{"eos_token_id": 2}`, []int32{2}, ""},
		{`{"eos_token_id": [128001, 128008, 128009]}`, []int32{128001, 128008, 128009}, ""},
		{`{"eos_token_id": "x"}`, nil, "eos_token_id"},
		{`{`, nil, GenerationConfig},
	} {
		dir := t.TempDir()
		if c.file != "" {
			if err := os.WriteFile(filepath.Join(dir, GenerationConfig), []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ConfigStops(dir)
		switch {
		case c.err == "" && (err != nil || !slices.Equal(got, c.want)):
			t.Errorf("%s: %v, %v; want %v", c.file, got, err, c.want)
		case c.err != "" && (!usererr.Is(err) || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %v; want a user error naming %s", c.file, err, c.err)
		}
	}
}
