package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/herdml/herd/internal/usererr"
)

// FuzzParse feeds Parse what users feed herd: a config file and --set overrides (one per
// line of sets). Whatever the input, Parse never panics; what it refuses is a user error
// naming the file or the --set; what it accepts validates, and round-trips: the accepted
// Run written back as YAML parses to the same Run.
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 60s ./trainer/config/
func FuzzParse(f *testing.F) {
	examples, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(examples) == 0 {
		f.Fatalf("no examples to seed from (%v)", err)
	}
	for _, path := range examples {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src, "")
		f.Add(src, "train.steps=3\ntrain.optim.betas=[0.8, 0.9]\nmodel.preset=tiny")
	}
	f.Add([]byte("name: x\nmodel: {preset: tiny}\ndata: {synthetic: true}\n"), "metap.overrides=[{match: \"layers.*\", lr_mult: 0.5}]")
	f.Add([]byte("a: &x {b: *x}\n"), "train=")
	f.Add([]byte("train: {steps: 1.5}\n---\nx: 1\n"), "=1\nname")
	f.Fuzz(func(t *testing.T, src []byte, sets string) {
		var setList []string
		if sets != "" {
			setList = strings.Split(sets, "\n")
		}
		run, err := Parse("run.yaml", src, setList)
		if err != nil {
			if !usererr.Is(err) {
				t.Fatalf("Parse error %v is not a user error", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "run.yaml") && !strings.HasPrefix(msg, "--set") {
				t.Fatalf("Parse error %q names neither the file nor a --set", msg)
			}
			return
		}
		if err := run.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
		out, err := yaml.Marshal(run)
		if err != nil {
			t.Fatalf("the accepted config does not encode: %v", err)
		}
		again, err := Parse("run.yaml", out, nil)
		if err != nil {
			t.Fatalf("the accepted config, written back, does not parse: %v\n%s", err, out)
		}
		if out2, _ := yaml.Marshal(again); string(out2) != string(out) {
			t.Fatalf("the config changed on a round trip:\n%s\nbecame\n%s", out, out2)
		}
	})
}
