package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer"
)

// evalSummary is what `herd eval --json` prints.
type evalSummary struct {
	Checkpoint  string  `json:"checkpoint"`
	Step        int64   `json:"step"`          // optimizer steps the checkpoint was trained for
	Loss        float64 `json:"loss"`          // mean cross-entropy per trained-on token, nats
	BitsPerByte float64 `json:"bits_per_byte"` // loss / ln 2 (byte-level tokens)
	Tokens      float64 `json:"tokens"`
	Batches     int     `json:"batches"`
}

func newEvalCmd() *cobra.Command {
	var (
		dataSpec string
		batches  int
		asJSON   bool
		captions bool
		prefix   string
		limit    int
	)
	c := &cobra.Command{
		Use:   "eval CKPT",
		Short: "Loss and bits per byte of a checkpoint on held-out data",
		Long: "Loads the checkpoint folder CKPT (e.g. runs/tiny/step-00000300, or a run folder such as runs/tiny\n" +
			"for its newest valid checkpoint) with the config it was trained\n" +
			"with, and evaluates it on --data, in the run's micro-batches.",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if dataSpec == "" {
				return usererr.New("--data", "required: a glob of held-out text files, a shard manifest or grpc://host:port/name")
			}
			if batches < 0 {
				return usererr.New("--batches", "must be positive, or 0 for the run's train.eval.batches; got %d", batches)
			}
			p := newProgress(c.ErrOrStderr())
			p.start(0)
			tr, err := trainer.Open(args[0], dataSpec, trainer.Options{
				Warn: warnStderr(c),
				EvalProgress: func(r trainer.EvalResult, of int) {
					p.show(fmt.Sprintf("eval batch %d/%d  loss %.4f", r.Batches, of, r.Loss), r.Batches == of)
				},
			})
			if err != nil {
				return err
			}
			defer tr.Close()
			if captions {
				caps, err := tr.Captions(dataSpec, prefix, limit)
				if err != nil {
					return err
				}
				sum := captionScore(args[0], tr.StepCount(), caps)
				if asJSON {
					return printJSON(c.OutOrStdout(), sum)
				}
				sum.print(c.OutOrStdout())
				return nil
			}
			if batches <= 0 {
				batches = tr.Cfg.Train.Eval.Batches
			}
			res, err := tr.Eval(batches)
			p.finish()
			if err != nil {
				return err
			}
			sum := evalSummary{Checkpoint: args[0], Step: res.StepsTrained, Loss: res.Loss, BitsPerByte: res.BitsPerByte, Tokens: res.Tokens, Batches: res.Batches}
			if asJSON {
				return printJSON(c.OutOrStdout(), sum)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s (step %d): loss %.4f, %.4f bits per byte over %.0f tokens in %d batches\n",
				sum.Checkpoint, sum.Step, sum.Loss, sum.BitsPerByte, sum.Tokens, sum.Batches)
			return nil
		},
	}
	c.Flags().StringVar(&dataSpec, "data", "", "held-out data: a glob of text files, a shard manifest or grpc://host:port/name (required)")
	c.Flags().IntVar(&batches, "batches", 0, "micro-batches to evaluate (default: the run's train.eval.batches)")
	c.Flags().BoolVar(&captions, "captions", false, "caption accuracy instead of loss: greedy-decode each image's caption after --caption-prefix and compare it with the data's")
	c.Flags().StringVar(&prefix, "caption-prefix", data.FashionCaptionPrefix, "with --captions: the start of every caption, given to the model with the image")
	c.Flags().IntVar(&limit, "limit", 0, "with --captions: decode the first N rows of the shuffled data (default all)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one machine-readable JSON summary on stdout")
	return c
}
