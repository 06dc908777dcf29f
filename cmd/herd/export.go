package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer"
)

func newExportCmd() *cobra.Command {
	var format string
	var merge bool
	cmd := &cobra.Command{
		Use:   "export CKPT DIR",
		Short: "Write a checkpoint's model as DIR/model.safetensors and DIR/config.json",
		Long: "Writes the weights of the checkpoint folder CKPT by their documented names (docs/model.md) and a\n" +
			"config.json with the model config, the forward multipliers of every tensor and the attention scale.\n" +
			"--format hf writes a Hugging Face LlamaForCausalLM instead, or a Llama4ForCausalLM for a\n" +
			"mixture-of-experts model (docs/checkpoint.md). A LoRA run's export holds its adapters only,\n" +
			"unless --merge folds them into the base's weights (W + alpha/rank·B·A); --format hf always merges.",
		Args: exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			write := (*trainer.Trainer).Export
			if merge {
				write = (*trainer.Trainer).ExportMerged
			}
			switch format {
			case "herd":
			case "hf":
				write = (*trainer.Trainer).ExportHF
			default:
				return usererr.New("--format", "unknown format %q; allowed: herd, hf", format)
			}
			dest, upload, err := destination(args[1], "the export (DIR)")
			if err != nil {
				return err
			}
			if upload != nil {
				defer os.RemoveAll(dest)
			}
			tr, err := trainer.Open(args[0], "", trainer.Options{Warn: warnStderr(c)})
			if err != nil {
				return err
			}
			defer tr.Close()
			if err := write(tr, dest); err != nil {
				return err
			}
			if upload != nil {
				// config.json last: whoever finds it in the bucket finds the weights too.
				if err := upload.PutDir(dest, "config.json"); err != nil {
					return fmt.Errorf("uploading the export: %w", err)
				}
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s and %s\n", storage.Join(args[1], "model.safetensors"), storage.Join(args[1], "config.json"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&merge, "merge", false, "write a LoRA run's weights with its adapters merged in, no adapter tensors")
	cmd.Flags().StringVar(&format, "format", "herd", "herd (docs/model.md's names, multipliers in config.json) or hf (Hugging Face LlamaForCausalLM, Llama4ForCausalLM with experts)")
	return cmd
}
