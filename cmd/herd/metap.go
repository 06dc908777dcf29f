package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/outdir"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/coordcheck"
)

func newMetapCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "metap",
		Short: "Per-tensor init scales, learning rates, weight decay, Adam eps and multipliers (MetaP)",
		Args:  noArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	c.AddCommand(newMetapTableCmd())
	c.AddCommand(newMetapCoordCheckCmd())
	return c
}

func newMetapTableCmd() *cobra.Command {
	var f configFlags
	var format string
	c := &cobra.Command{
		Use:   "table CONFIG",
		Short: "Print the MetaP table of a run: every tensor's class, init std, lr, weight decay, eps and multiplier",
		Long: `Print the table the trainer initialises and optimises from, worked out by the rules of
metap.mode (sp, mup or metap) from train.optim and metap.init_std, tuned on the proxy that
metap.base describes. See docs/metap.md for every rule and its source.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			run, err := f.load(args[0])
			if err != nil {
				return err
			}
			tab, err := run.MetaPTable()
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(c.OutOrStdout(), struct {
					metap.Table
					Hash string `json:"hash"`
				}{tab, tab.Hash()})
			}
			return tab.Write(c.OutOrStdout(), format)
		},
	}
	f.register(c)
	c.Flags().StringVar(&format, "format", "text", "output format: "+strings.Join(metap.Formats, ", "))
	return c
}

func newMetapCoordCheckCmd() *cobra.Command {
	var f configFlags
	// 16 tokens per step, fewer than the smallest usual width, keep the check near μP's
	// regime (width much larger than the batch): Adam's first, sign-like update has a part
	// that does not line up with the inputs, of relative size about √(tokens/width). 16
	// seeds average out the noise of so small a batch. On the tiny family the hidden
	// activations' largest |slope| fell from 0.17 (2×64 tokens, 3 seeds) to 0.08.
	opt := coordcheck.Options{Steps: 10, Seeds: 16, Batch: 1, SeqLen: 16}
	var maxSlope float64
	var pngPath string
	c := &cobra.Command{
		Use:   "coord-check CONFIG",
		Short: "Train the run's model at several widths (and depths) for a few steps and check that activations keep their size",
		Long: `Train the run's model at every --widths (d_model; heads, ffn and expert widths in
proportion) and every --depths (n_layers) for --steps steps at train.optim.lr, held
constant, each from the table of metap.mode. Print, per activation (embedding, attention
and ffn branch outputs and the residual stream of every block, logits; the last residual
stream against depth), the least-squares slope of log2(mean |activation|) against
log2(size), and fail when one leaves [-max-slope, max-slope] at any step after the init.
A proxy d_model or n_layers left at 0 in metap.base is the family's smallest.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			run, err := f.load(args[0])
			if err != nil {
				return err
			}
			if !(maxSlope >= 0) {
				return usererr.New("--max-slope", "must be at least 0 (0 = report only), got %g", maxSlope)
			}
			if pngPath != "" {
				if err := outdir.CheckFile(pngPath, "the plots (--png)"); err != nil {
					return err
				}
			}
			res, err := coordcheck.Run(run, opt)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			if f.json {
				err = printJSON(w, res)
			} else {
				err = res.WriteTable(w)
			}
			if err != nil {
				return err
			}
			if pngPath != "" {
				if err := writePNG(pngPath, res); err != nil {
					return err
				}
			}
			if maxSlope == 0 {
				return nil
			}
			if bad := res.Check(maxSlope); len(bad) > 0 {
				return fmt.Errorf("coord check failed under %s: %d slopes outside ±%g, the first %s", res.Mode, len(bad), maxSlope, bad[0])
			}
			return nil
		},
	}
	f.register(c)
	fl := c.Flags()
	fl.IntSliceVar(&opt.Widths, "widths", []int{64, 128, 256, 512}, "d_model of each model of the width family")
	fl.IntSliceVar(&opt.Depths, "depths", nil, "n_layers of each model of the depth family (none = no depth check)")
	fl.IntVar(&opt.Steps, "steps", opt.Steps, "optimizer steps per model")
	fl.IntVar(&opt.Seeds, "seeds", opt.Seeds, "seeds per model, their measures averaged")
	fl.IntVar(&opt.Batch, "batch", opt.Batch, "sequences per step")
	fl.IntVar(&opt.SeqLen, "seq-len", opt.SeqLen, "positions per sequence")
	fl.Float64Var(&maxSlope, "max-slope", 0.15, "largest |slope| allowed after the init; 0 = report only")
	fl.StringVar(&pngPath, "png", "", "write the plots to this PNG file")
	return c
}

// writePNG writes the check's plots to path, created or truncated.
func writePNG(path string, res coordcheck.Result) error {
	out, err := os.Create(path)
	if err != nil {
		return usererr.New("--png", "cannot create %s: %v", path, err)
	}
	if err := res.WritePNG(out); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
