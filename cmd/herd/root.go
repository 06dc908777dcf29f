package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/pretrained"
)

// newRootCmd builds the herd command tree. Each command group lives in its own file with
// a new<Name>Cmd function; add one AddCommand line here for it.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "herd",
		Short:         "Train Llama-4-style MoE transformers, durably",
		SilenceUsage:  true, // errors are printed once, by main, on one line
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	// A mistyped flag is the user's to fix, like a bad config key: exit status 2.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usererr.New("", "%v; see %s --help", err, c.CommandPath())
	})
	root.AddCommand(newTrainCmd())
	root.AddCommand(newEvalCmd())
	root.AddCommand(newExportCmd())
	root.AddCommand(newGenerateCmd())
	root.AddCommand(newPlanCmd())
	root.AddCommand(newMetapCmd())
	root.AddCommand(newDataCmd())
	root.AddCommand(newSweepCmd())
	root.AddCommand(newServerCmd(), newWorkerCmd(), newRunCmd(), newLsCmd(), newStatusCmd(), newPauseCmd(), newResumeCmd(), newStopCmd(), newGPUsCmd(), newMetricsCmd(), newUICmd())
	return root
}

// noArgs refuses arguments, and so an unknown subcommand, as a user error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usererr.New("", "unknown command %q; see %s --help", args[0], c.CommandPath())
	}
	return nil
}

// exactArgs wants n positional arguments, named in the command's Use line.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usererr.New("", "want %d argument(s), got %d; usage: %s", n, len(args), c.UseLine())
		}
		return nil
	}
}

// configFlags are the flags of every command that takes a config file.
type configFlags struct {
	sets []string
	json bool
}

func (f *configFlags) register(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.sets, "set", nil, "override one config key, key.path=value (repeatable)")
	c.Flags().BoolVar(&f.json, "json", false, "print one machine-readable JSON summary on stdout")
}

// load reads and validates the config at path with the --set overrides, plus extra
// overrides from the command's own flags.
func (f *configFlags) load(path string, extra ...string) (config.Run, error) {
	return config.LoadFrom(path, append(append([]string(nil), f.sets...), extra...), pretrained.ModelConfig)
}

// stepsFlag is --steps of the commands that train a config (train, run): train.steps,
// given as a flag because it is the key users change most.
type stepsFlag struct{ n int64 }

func (s *stepsFlag) register(c *cobra.Command) {
	c.Flags().Int64Var(&s.n, "steps", 0, "train this many steps in all (sets train.steps)")
}

// sets is the override --steps stands for, to load after the --set flags; none when
// --steps was not given.
func (s *stepsFlag) sets(c *cobra.Command) []string {
	if !c.Flags().Changed("steps") {
		return nil
	}
	return []string{fmt.Sprintf("train.steps=%d", s.n)}
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// warnStderr prints a trainer's warnings (such as a corrupt checkpoint skipped) on the
// command's stderr, one line each.
func warnStderr(c *cobra.Command) func(string) {
	return func(w string) { fmt.Fprintln(c.ErrOrStderr(), "warning: "+w) }
}
