package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/data/hftok"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/generate"
	"github.com/herdml/herd/trainer/hf"
	"github.com/herdml/herd/trainer/model"
)

// generateSummary is what `herd generate --json` prints.
type generateSummary struct {
	Model      string  `json:"model"`
	Prompt     string  `json:"prompt"`
	Text       string  `json:"text"`         // the generated continuation, decoded (bytes that are not UTF-8 become U+FFFD; ids are exact)
	IDs        []int32 `json:"ids"`          // its token ids
	PromptIDs  []int32 `json:"prompt_ids"`   // the prompt's token ids
	Stop       string  `json:"stop"`         // end, max_tokens or seq_len
	TokensPerS float64 `json:"tokens_per_s"` // generated tokens per second, prompt included in the time
}

func newGenerateCmd() *cobra.Command {
	var (
		prompt, tokName string
		asJSON          bool
		o               = generate.Options{End: -1}
	)
	c := &cobra.Command{
		Use:   "generate CKPT|EXPORT|HF_DIR",
		Short: "Continue a prompt with a checkpoint's, an export's or a Hugging Face model, streaming the text",
		Long: "Loads the checkpoint folder CKPT (or a run folder, for its newest valid checkpoint), the\n" +
			"herd export folder EXPORT or the Hugging Face Llama folder HF_DIR and continues --prompt\n" +
			"token by token with a KV cache, printing each token's text as it comes: greedy by\n" +
			"default, sampled with --temperature > 0 (then\n" +
			"--top-k, --top-p, --seed). It stops after --max-tokens tokens or when the sequence fills\n" +
			"the model's seq_len (herd's vocabularies have no end token).",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if prompt == "" {
				return usererr.New("--prompt", "required: the text to continue")
			}
			tok, err := generationTokenizer(tokName, c.Flags().Changed("tokenizer"), args[0])
			if err != nil {
				return err
			}
			m, run, closeModel, err := openForGeneration(c, args[0])
			if err != nil {
				return err
			}
			defer closeModel()
			if V := m.Cfg.VocabSize; tok.Vocab() > V {
				return usererr.New("--tokenizer", "%s has %d tokens, more than the model's vocab_size %d", tok.Name(), tok.Vocab(), V)
			}
			ids := tok.Encode(nil, []byte(prompt))
			if len(ids) > m.Cfg.SeqLen {
				return usererr.New("--prompt", "is %d tokens, longer than the model's seq_len %d", len(ids), m.Cfg.SeqLen)
			}
			var stream io.Writer = c.OutOrStdout()
			if asJSON {
				stream = io.Discard
			}
			start := time.Now()
			out, stop := run(ids, o, func(id int32) {
				fmt.Fprint(stream, tok.Decode([]int32{id}))
			})
			sum := generateSummary{
				Model: args[0], Prompt: prompt, Text: tok.Decode(out), IDs: out, PromptIDs: ids, Stop: stop,
				TokensPerS: float64(len(out)) / time.Since(start).Seconds(),
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), sum)
			}
			fmt.Fprintln(c.OutOrStdout())
			fmt.Fprintf(c.ErrOrStderr(), "%d tokens, %.1f tokens/s, stopped at %s\n", len(out), sum.TokensPerS, stop)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&prompt, "prompt", "", "the text to continue (required)")
	f.StringVar(&tokName, "tokenizer", "byte", "how text becomes token ids: byte, o200k_base, cl100k_base or a tokenizer.json path (a Hugging Face folder's own by default)")
	f.IntVar(&o.MaxTokens, "max-tokens", 128, "generate at most this many tokens")
	f.Float64Var(&o.Temperature, "temperature", 0, "sampling temperature; 0 = greedy")
	f.IntVar(&o.TopK, "top-k", 0, "sample among the k most likely tokens only; 0 = all")
	f.Float64Var(&o.TopP, "top-p", 1, "sample among the fewest most likely tokens whose probabilities reach p; 1 = all")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the sampling: the same seed gives the same text")
	f.BoolVar(&asJSON, "json", false, "print one JSON result on stdout instead of streaming the text")
	return c
}

// generationTokenizer is the tokenizer --tokenizer names: one of data.Tokenizers, or a
// Hugging Face tokenizer.json by its path; without the flag, a Hugging Face folder's own
// tokenizer.json when it has one, else bytes.
func generationTokenizer(name string, named bool, model string) (data.Tokenizer, error) {
	own := filepath.Join(model, "tokenizer.json")
	if _, err := os.Stat(own); err == nil && !named && hf.IsFolder(model) {
		name = own
	}
	if strings.HasSuffix(name, ".json") {
		return hftok.Load(name)
	}
	return data.NewTokenizer(name)
}

// openForGeneration loads the model of a herd export folder, or of a checkpoint or run
// folder (with its trainer, whose FP8 scaling Generate freezes), and returns how to
// generate with it and what to close after.
func openForGeneration(c *cobra.Command, path string) (*model.Model[float32], func([]int32, generate.Options, func(int32)) ([]int32, string), func(), error) {
	var load func(string) (*model.Model[float32], error)
	switch {
	case hf.IsFolder(path):
		load = func(dir string) (*model.Model[float32], error) { return hf.Load(dir, device.CPU[float32](), 1) }
	case trainer.IsExport(path):
		load = trainer.LoadExport
	}
	if load != nil {
		m, err := load(path)
		if err != nil {
			return nil, nil, nil, err
		}
		run := func(prompt []int32, o generate.Options, emit func(int32)) ([]int32, string) {
			return generate.Run(m.NewDecoder(), prompt, o, emit)
		}
		return m, run, func() {}, nil
	}
	tr, err := trainer.Open(path, "", trainer.Options{Warn: warnStderr(c)})
	if err != nil {
		return nil, nil, nil, err
	}
	return tr.Model, tr.Generate, func() { tr.Close() }, nil
}
