package generate

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/herdml/herd/internal/usererr"
)

// GenerationConfig is the file of a Hugging Face model folder that names, among other
// defaults of generation, the tokens that end it.
const GenerationConfig = "generation_config.json"

// ConfigStops returns the eos_token_id of dir's generation_config.json: one id or a list
// (Llama 3 lists its end of text and end of turn). None when the file does not exist.
func ConfigStops(dir string) ([]int32, error) {
	path := filepath.Join(dir, GenerationConfig)
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, usererr.New(path, "cannot read: %v", err)
	}
	var cfg struct {
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, usererr.New(path, "not a generation_config.json: %v", err)
	}
	if len(cfg.EOS) == 0 || string(cfg.EOS) == "null" {
		return nil, nil
	}
	var one int32
	if json.Unmarshal(cfg.EOS, &one) == nil {
		return []int32{one}, nil
	}
	var list []int32
	if err := json.Unmarshal(cfg.EOS, &list); err != nil {
		return nil, usererr.New(path+": eos_token_id", "is %s; want a token id or a list of them", cfg.EOS)
	}
	return list, nil
}
