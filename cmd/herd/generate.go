package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/generate"
	"github.com/herdml/herd/trainer/hf"
	"github.com/herdml/herd/trainer/model"
)

// generateSummary is what `herd generate --prompt --json` prints, and with --chat, one
// line of it for each conversation (with Where, and Want and Exact when the conversation
// ends with the expected answer), before a chatSummary.
type generateSummary struct {
	Model      string  `json:"model"`
	Where      string  `json:"where,omitempty"` // --chat: the conversation's file:line
	Prompt     string  `json:"prompt"`          // --chat: the rendered conversation, with the generation prompt
	Text       string  `json:"text"`            // the generated continuation, decoded (bytes that are not UTF-8 become U+FFFD; ids are exact)
	IDs        []int32 `json:"ids"`             // its token ids
	PromptIDs  []int32 `json:"prompt_ids"`      // the prompt's token ids
	Stop       string  `json:"stop"`            // end, max_tokens or seq_len
	TokensPerS float64 `json:"tokens_per_s"`    // generated tokens per second, prompt included in the time
	Want       *string `json:"want,omitempty"`  // --chat: the expected answer as the template renders it, end of turn included
	Exact      *bool   `json:"exact,omitempty"` // --chat: Text equals Want
}

// chatSummary ends `herd generate --chat --json`.
type chatSummary struct {
	Conversations int     `json:"conversations"`
	Expected      int     `json:"expected"`    // conversations that end with the expected answer
	ExactMatch    int     `json:"exact_match"` // of those, the ones generated exactly
	Accuracy      float64 `json:"accuracy"`    // exact_match / expected (0 when none is expected)
	TokensPerS    float64 `json:"tokens_per_s"`
}

// generateJob is one prompt to continue.
type generateJob struct {
	where, prompt string
	want          *string
	ids           []int32
}

func newGenerateCmd() *cobra.Command {
	var (
		prompt, chatFile, tokName, chatTemplate string
		asJSON                                  bool
		o                                       generate.Options
	)
	c := &cobra.Command{
		Use:   "generate CKPT|EXPORT|HF_DIR (--prompt TEXT | --chat JSONL)",
		Short: "Continue a prompt or answer chat conversations with a checkpoint's, an export's or a Hugging Face model, streaming the text",
		Long: "Loads the checkpoint folder CKPT (or a run folder, for its newest valid checkpoint), the\n" +
			"herd export folder EXPORT or the Hugging Face Llama folder HF_DIR and continues --prompt\n" +
			"token by token with a KV cache, printing each token's text as it comes: greedy by\n" +
			"default, sampled with --temperature > 0 (then --top-k, --top-p, --seed). With --chat,\n" +
			"each line of the JSONL file is a conversation ({\"messages\": [...]}) rendered with the\n" +
			"chat template and the generation prompt, and the model writes the assistant's reply; a\n" +
			"conversation that ends with an assistant turn holds the expected answer, which is left\n" +
			"out of the prompt and compared with the reply (exact match K/N at the end). It stops\n" +
			"at the tokenizer's EOS (tokenizer_config.json's eos_token, generation_config.json's\n" +
			"eos_token_id), at the template's end of turn (--chat), after --max-tokens tokens or\n" +
			"when the sequence fills the model's seq_len.",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			switch {
			case prompt == "" && chatFile == "":
				return usererr.New("--prompt", "required: the text to continue (or --chat JSONL)")
			case prompt != "" && chatFile != "":
				return usererr.New("--chat", "give --prompt or --chat, not both")
			}
			tokPath, tok, err := generationTokenizer(tokName, c.Flags().Changed("tokenizer"), args[0])
			if err != nil {
				return err
			}
			var jobs []generateJob
			eos, eot := "", ""
			if chatFile != "" {
				tmpl, err := loadChatTemplate(chatTemplate, tokPath, tok)
				if err != nil {
					return err
				}
				eos, eot = tmpl.EOS(), tmpl.EndOfTurn()
				if jobs, err = chatJobs(chatFile, tmpl); err != nil {
					return err
				}
			} else {
				jobs = []generateJob{{where: "--prompt", prompt: prompt}}
				if chatTemplate == "" && strings.HasSuffix(tokPath, ".json") {
					chatTemplate = filepath.Join(filepath.Dir(tokPath), data.HFFiles[1])
				}
				if chatTemplate != "" {
					if eos, err = data.EOSToken(chatTemplate); err != nil {
						return err
					}
				}
			}
			m, run, closeModel, err := openForGeneration(c, args[0])
			if err != nil {
				return err
			}
			defer closeModel()
			if o.Stop, err = stopTokens(args[0], tok, eos, eot); err != nil {
				return err
			}
			if V := m.Cfg.VocabSize; tok.Vocab() > V {
				return usererr.New("--tokenizer", "%s has %d tokens, more than the model's vocab_size %d", tok.Name(), tok.Vocab(), V)
			}
			for i := range jobs {
				j := &jobs[i]
				j.ids = tok.Encode(nil, []byte(j.prompt))
				if len(j.ids) > m.Cfg.SeqLen {
					return usererr.New(j.where, "the prompt is %d tokens, longer than the model's seq_len %d", len(j.ids), m.Cfg.SeqLen)
				}
				if len(j.ids) == 0 {
					return usererr.New(j.where, "the prompt renders to no tokens; the model needs at least one to continue")
				}
			}
			return generateAll(c, args[0], jobs, tok, run, o, asJSON, chatFile != "")
		},
	}
	f := c.Flags()
	f.StringVar(&prompt, "prompt", "", "the text to continue")
	f.StringVar(&chatFile, "chat", "", "a JSONL file of conversations ({\"messages\": [...]}) to answer, one per line")
	f.StringVar(&chatTemplate, "chat-template", "", chatTemplateUsage)
	f.StringVar(&tokName, "tokenizer", "byte", "how text becomes token ids: byte, o200k_base, cl100k_base or a tokenizer.json path (a Hugging Face folder's own by default)")
	f.IntVar(&o.MaxTokens, "max-tokens", 128, "generate at most this many tokens")
	f.Float64Var(&o.Temperature, "temperature", 0, "sampling temperature; 0 = greedy")
	f.IntVar(&o.TopK, "top-k", 0, "sample among the k most likely tokens only; 0 = all")
	f.Float64Var(&o.TopP, "top-p", 1, "sample among the fewest most likely tokens whose probabilities reach p; 1 = all")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the sampling: the same seed gives the same text")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of streaming the text: one result (--chat: one per conversation, then a summary)")
	return c
}

// stopTokens are the ids that end generation: the eos_token_id of the model folder's
// generation_config.json, and each of texts (EOS, end of turn) that is one token of tok.
func stopTokens(model string, tok data.Tokenizer, texts ...string) ([]int32, error) {
	stop, err := generate.ConfigStops(model)
	for _, s := range texts {
		if ids := tok.Encode(nil, []byte(s)); len(ids) == 1 {
			stop = append(stop, ids[0])
		}
	}
	return stop, err
}

// chatJobs reads the conversations of a chat JSONL file and renders each for generation;
// every bad line is found before anything is generated.
func chatJobs(path string, tmpl *data.ChatTemplate) ([]generateJob, error) {
	var jobs []generateJob
	err := data.ReadChat(path, nil, func(where string, msgs []data.Message) error {
		prompt, want, err := tmpl.Reply(where, msgs)
		if err != nil {
			return err
		}
		j := generateJob{where: where, prompt: prompt}
		if msgs[len(msgs)-1].Role == "assistant" {
			j.want = &want
		}
		jobs = append(jobs, j)
		return nil
	})
	if err == nil && len(jobs) == 0 {
		err = usererr.New(path, "holds no conversation")
	}
	return jobs, err
}

// generateAll runs each job, streaming its text (a header line per conversation with
// chat) or printing JSON (with chat, one line per conversation), and with chat, the
// exact-match count at the end.
func generateAll(c *cobra.Command, model string, jobs []generateJob, tok data.Tokenizer,
	run func([]int32, generate.Options, func(int32)) ([]int32, string), o generate.Options, asJSON, chat bool) error {
	w := c.OutOrStdout()
	var stream io.Writer = w
	if asJSON {
		stream = io.Discard
	}
	lines := json.NewEncoder(w) // --chat --json: JSON Lines
	var sum chatSummary
	tokens, start := 0, time.Now()
	for _, j := range jobs {
		if chat {
			fmt.Fprintf(stream, "== %s\n", j.where)
		}
		t0 := time.Now()
		out, stop := run(j.ids, o, func(id int32) {
			fmt.Fprint(stream, tok.Decode([]int32{id}))
		})
		tokens += len(out)
		g := generateSummary{
			Model: model, Prompt: j.prompt, Text: tok.Decode(out), IDs: out, PromptIDs: j.ids, Stop: stop,
			TokensPerS: float64(len(out)) / time.Since(t0).Seconds(), Want: j.want,
		}
		sum.Conversations++
		if j.want != nil {
			exact := g.Text == *j.want
			g.Exact = &exact
			sum.Expected++
			if exact {
				sum.ExactMatch++
			}
		}
		if chat {
			g.Where = j.where
		}
		switch {
		case asJSON && chat:
			if err := lines.Encode(g); err != nil {
				return fmt.Errorf("writing JSON: %w", err)
			}
		case asJSON:
			return printJSON(w, g)
		case !strings.HasSuffix(g.Text, "\n"):
			fmt.Fprintln(w)
		}
		if !asJSON && g.Exact != nil {
			if *g.Exact {
				fmt.Fprintln(w, "-- exact match")
			} else {
				fmt.Fprintf(w, "-- differs: want %q\n", *g.Want)
			}
		}
		if !chat && !asJSON {
			fmt.Fprintf(c.ErrOrStderr(), "%d tokens, %.1f tokens/s, stopped at %s\n", len(out), g.TokensPerS, stop)
		}
	}
	if !chat {
		return nil
	}
	sum.TokensPerS = float64(tokens) / time.Since(start).Seconds()
	if sum.Expected > 0 {
		sum.Accuracy = float64(sum.ExactMatch) / float64(sum.Expected)
	}
	if asJSON {
		if err := lines.Encode(sum); err != nil {
			return fmt.Errorf("writing JSON: %w", err)
		}
		return nil
	}
	fmt.Fprintf(w, "exact match %d/%d\n", sum.ExactMatch, sum.Expected)
	fmt.Fprintf(c.ErrOrStderr(), "%d conversations, %d tokens, %.1f tokens/s\n", sum.Conversations, tokens, sum.TokensPerS)
	return nil
}

// generationTokenizer is the tokenizer --tokenizer names: one of data.Tokenizers, or a
// Hugging Face tokenizer.json by its path; without the flag, a Hugging Face folder's own
// tokenizer.json when it has one, else bytes. It returns the name it loaded.
func generationTokenizer(name string, named bool, model string) (string, data.Tokenizer, error) {
	own := filepath.Join(model, "tokenizer.json")
	if _, err := os.Stat(own); err == nil && !named && hf.IsFolder(model) {
		name = own
	}
	tok, err := data.NewTokenizer(name)
	return name, tok, err
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
