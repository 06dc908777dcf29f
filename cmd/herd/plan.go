package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/sysmem"
	"github.com/herdml/herd/trainer/config"
)

func newPlanCmd() *cobra.Command {
	var f configFlags
	c := &cobra.Command{
		Use:   "plan CONFIG",
		Short: "Parameters, FLOPs per token and memory per rank and device of a run, without running it",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			run, err := f.load(args[0])
			if err != nil {
				return err
			}
			p := run.Plan()
			w := c.OutOrStdout()
			if f.json {
				return printJSON(w, p)
			}
			m := p.Memory
			fmt.Fprintf(w, "run %s: model %s\n", run.Name, run.Model)
			fmt.Fprintf(w, "parameters        %s total, %s active per token, %s trainable\n", count(float64(p.Params)), count(float64(p.ActiveParams)), count(float64(p.Trainable)))
			fmt.Fprintf(w, "FLOPs per token   %s (matmuls %s, attention %s), forward + backward\n",
				count(p.FLOPsPerToken), count(p.MatmulFLOPs), count(p.AttentionFLOPs))
			fmt.Fprintf(w, "whole run         %s FLOPs over %d steps of %d tokens\n", count(p.TrainFLOPs), run.Train.Steps, p.TokensPerStep)
			fmt.Fprintf(w, "memory per rank   %s: weights %s, gradients %s, optimizer %s, activations %s (micro-batch %d × %d tokens), %d rank(s)\n",
				sysmem.Format(m.Total), sysmem.Format(m.Weights), sysmem.Format(m.Grads), sysmem.Format(m.Optimizer), sysmem.Format(m.Activations), p.MicroBatch, run.Model.SeqLen, p.Ranks)
			fmt.Fprintf(w, "memory per device %s\n", deviceLine(p.Device))
			if lim := sysmem.Lookup(); lim.Bytes > 0 {
				fits := "one rank fits"
				if run.CheckMemory(1, lim) != nil {
					fits = "one rank does not fit"
				}
				fmt.Fprintf(w, "memory here       %s may be used (limit set by %s): %s\n", sysmem.Format(lim.Bytes), lim.Source, fits)
			}
			return nil
		},
	}
	f.register(c)
	return c
}

// deviceLine says what each device of the run holds: one replica per rank.
func deviceLine(d config.Device) string {
	line := fmt.Sprintf("%s: %s, one rank's whole replica", d.Name, sysmem.Format(d.Bytes))
	if d.Ranks > 1 {
		return line + fmt.Sprintf(", × %d ranks sharing it in one process (herd train)", d.Ranks)
	}
	if d.Devices > 1 {
		return line + fmt.Sprintf(", on each of %d devices (one per rank)", d.Devices)
	}
	return line
}

// count prints a quantity with a decimal SI suffix, 1.09e11 -> "109 G", and in
// e-notation past the peta range, where suffixes stop being familiar.
func count(v float64) string {
	if v >= 1e18 {
		return fmt.Sprintf("%.3g", v)
	}
	for _, u := range []struct {
		s string
		f float64
	}{{"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if v >= u.f {
			return fmt.Sprintf("%.3g %s", v/u.f, u.s)
		}
	}
	return fmt.Sprintf("%.3g", v)
}
