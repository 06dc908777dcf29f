package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/metap"
)

func newMetapCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "metap",
		Short: "Per-tensor init scales, learning rates, weight decay, Adam eps and multipliers (MetaP)",
		Args:  noArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	c.AddCommand(newMetapTableCmd())
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
