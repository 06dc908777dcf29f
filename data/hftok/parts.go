package hftok

import (
	"encoding/json"
	"fmt"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// A component of tokenizer.json: {"type": ..., ...}. Errors returned here name what is
// unsupported; Parse prefixes the file and the key.
type component struct {
	Type string `json:"type"`

	Normalizers   []json.RawMessage `json:"normalizers"`   // Sequence (normalizer)
	Pretokenizers []json.RawMessage `json:"pretokenizers"` // Sequence (pre-tokenizer)

	Pattern  struct{ Regex, String *string } `json:"pattern"` // Split
	Behavior string                          `json:"behavior"`
	Invert   bool                            `json:"invert"`

	AddPrefixSpace bool  `json:"add_prefix_space"` // ByteLevel
	UseRegex       *bool `json:"use_regex"`
}

func parseComponent(raw json.RawMessage) (*component, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// parseNormalizer returns the Unicode forms to apply, in order.
func parseNormalizer(raw json.RawMessage) ([]norm.Form, error) {
	c, err := parseComponent(raw)
	if c == nil || err != nil {
		return nil, err
	}
	forms := map[string]norm.Form{"NFC": norm.NFC, "NFKC": norm.NFKC, "NFD": norm.NFD, "NFKD": norm.NFKD}
	if f, ok := forms[c.Type]; ok {
		return []norm.Form{f}, nil
	}
	if c.Type != "Sequence" {
		return nil, fmt.Errorf("type %q is not supported; allowed: NFC, NFKC, NFD, NFKD, Sequence of them", c.Type)
	}
	var out []norm.Form
	for i, r := range c.Normalizers {
		fs, err := parseNormalizer(r)
		if err != nil {
			return nil, fmt.Errorf("normalizers[%d]: %w", i, err)
		}
		out = append(out, fs...)
	}
	return out, nil
}

// parsePreTokenizer returns the steps to apply, in order.
func parsePreTokenizer(raw json.RawMessage) ([]preTokenizer, error) {
	c, err := parseComponent(raw)
	if c == nil || err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var out []preTokenizer
		for i, r := range c.Pretokenizers {
			ps, err := parsePreTokenizer(r)
			if err != nil {
				return nil, fmt.Errorf("pretokenizers[%d]: %w", i, err)
			}
			out = append(out, ps...)
		}
		return out, nil
	case "ByteLevel":
		p := preTokenizer{byteLevel: true, prefixSpace: c.AddPrefixSpace}
		if c.UseRegex == nil || *c.UseRegex {
			p.re = regexp2.MustCompile(gpt2Split, regexp2.None)
		}
		return []preTokenizer{p}, nil
	case "Split":
		if c.Behavior != "Isolated" || c.Invert {
			return nil, fmt.Errorf("Split with behavior %q, invert %v is not supported; allowed: behavior Isolated, invert false", c.Behavior, c.Invert)
		}
		var expr string
		switch {
		case c.Pattern.Regex != nil:
			expr = *c.Pattern.Regex
		case c.Pattern.String != nil:
			expr = regexp2.Escape(*c.Pattern.String)
		default:
			return nil, fmt.Errorf("Split needs pattern.Regex or pattern.String")
		}
		re, err := regexp2.Compile(expr, regexp2.None)
		if err != nil {
			return nil, fmt.Errorf("Split pattern %q: %v", expr, err)
		}
		return []preTokenizer{{re: re}}, nil
	}
	return nil, fmt.Errorf("type %q is not supported; allowed: ByteLevel, Split, Sequence", c.Type)
}

// checkDecoder accepts the decoders Decode implements: ByteLevel (or none).
func checkDecoder(raw json.RawMessage) error {
	c, err := parseComponent(raw)
	if c == nil || err != nil {
		return err
	}
	if c.Type != "ByteLevel" {
		return fmt.Errorf("type %q is not supported; allowed: ByteLevel", c.Type)
	}
	return nil
}
