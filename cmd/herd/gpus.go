package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/gpu"
)

func newGPUsCmd() *cobra.Command {
	var jsonOut bool
	c := &cobra.Command{
		Use:   "gpus",
		Short: "List this host's NVIDIA GPUs: memory, utilisation, temperature, ECC errors",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			h, err := gpu.List()
			if errors.Is(err, gpu.ErrNoDriver) {
				if jsonOut {
					return printJSON(c.OutOrStdout(), h)
				}
				fmt.Fprintln(c.OutOrStdout(), "No NVIDIA driver is present on this host, so there are no GPUs to list; herd trains on the CPU.")
				return nil
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(c.OutOrStdout(), h)
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "driver %s\n", h.Driver)
			fmt.Fprintln(w, "GPU\tNAME\tMEMORY USED/TOTAL\tUTIL\tTEMP\tECC CORR/UNCORR")
			for _, d := range h.Devices {
				fmt.Fprintf(w, "%d\t%s\t%.1f/%.1f GiB\t%s\t%s\t%s\n", d.Index, d.Name,
					float64(d.MemoryUsed)/(1<<30), float64(d.MemoryTotal)/(1<<30),
					orNA(d.Utilization, "%"), orNA(d.Temperature, " C"), ecc(d))
			}
			return w.Flush()
		},
	}
	c.Flags().BoolVar(&jsonOut, "json", false, "print the devices as JSON")
	return c
}

func orNA(v int, unit string) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d%s", v, unit)
}

func ecc(d gpu.Device) string {
	if d.ECCCorrected < 0 && d.ECCUncorrected < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d/%d", d.ECCCorrected, d.ECCUncorrected)
}
