package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
)

// newDataCmd groups the dataset commands: pack, inspect, verify.
func newDataCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "data",
		Short: "Pack corpora into Arrow token shards, inspect, verify and serve them",
		Args:  noArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	c.AddCommand(newDataPackCmd(), newDataInspectCmd(), newDataVerifyCmd(), newDataServeCmd())
	return c
}

func newDataPackCmd() *cobra.Command {
	var (
		o                  data.PackOptions
		text, jsonl, field string
		parquet, column    string
		images, chat       string
		chatTemplate       string
		onLong             string
		chatStats          data.ChatStats
		imageSize          int
		fashion, split     string
		quiet, asJSON      bool
	)
	c := &cobra.Command{
		Use:   "pack --out DIR (--text GLOB | --jsonl GLOB [--field F] | --parquet GLOB [--column C] | --chat GLOB (--tokenizer PATH/tokenizer.json | --chat-template FILE) [--on-long A] | --images LIST | --fashion-mnist DIR [--split S])",
		Short: "Tokenize and pack documents into Arrow shards with a manifest",
		Long: `Tokenize and pack documents into rows of seq_len+1 tokens, written as Arrow IPC
shards plus manifest.json (format: docs/data.md). Text globs take ** and environment
variables, and an optional #train or #eval suffix selects a deterministic 95/5 split
by file. Chat JSONL ({"messages": [{"role", "content"}]}) is rendered with the chat
template of the tokenizer_config.json beside --tokenizer (or --chat-template's) and
trained only on the assistant's turns. The output is the same for the same input, whatever the number of
threads.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var read func(func(*data.RawDoc) error) error
			total, unit := int64(-1), "bytes"
			var bar *progressbar.ProgressBar
			progress := func(n int64) {
				if bar != nil {
					bar.Add64(n)
				}
			}
			switch {
			case numTrue(text != "", jsonl != "", parquet != "", chat != "", images != "", fashion != "") != 1:
				return usererr.New("herd data pack", "give exactly one input: --text, --jsonl, --parquet, --chat, --images or --fashion-mnist")
			case text != "":
				read = data.TextFiles(text, progress)
			case jsonl != "":
				if field == "" {
					return usererr.New("--field", "name the JSON field that holds the text")
				}
				read = data.JSONLFiles(jsonl, field, progress)
			case parquet != "":
				read = data.ParquetFiles(parquet, column, progress)
			case chat != "":
				var err error
				if read, err = chatInput(chat, o.Tokenizer, chatTemplate, onLong, o.SeqLen, &chatStats, progress); err != nil {
					return err
				}
			case images != "":
				if o.Patch == 0 {
					o.Patch = 4
				}
				if o.Channels == 0 {
					o.Channels = 3
				}
				unit = "images"
				read = data.ImageCaptions(images, imageSize, o.Channels, progress)
			default:
				if o.Patch == 0 {
					o.Patch = 4
				}
				o.Channels, unit = 1, "images"
				read = data.FashionMNIST(fashion, split, progress)
			}
			if o.Out == "" {
				return usererr.New("--out", "name the folder to write the dataset to")
			}
			if !quiet {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("packing "+unit), progressbar.OptionShowBytes(unit == "bytes"),
					progressbar.OptionShowCount(), progressbar.OptionThrottle(200e6))
			}
			ctx, stop := interruptContext() // Ctrl-C stops the pack, which removes what it wrote
			defer stop()
			o.Ctx = ctx
			m, err := data.Pack(read, o)
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
			if err != nil {
				return err
			}
			if chat != "" {
				fmt.Fprintf(c.ErrOrStderr(), "%d conversations: %d truncated, %d dropped (--on-long %s)\n",
					chatStats.Conversations.Load(), chatStats.Truncated.Load(), chatStats.Dropped.Load(), onLong)
			}
			return printManifest(c, filepath.Join(o.Out, data.ManifestName), m, asJSON)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.Out, "out", "", "output folder")
	fl.StringVar(&text, "text", "", "glob of text files, one document each (e.g. '${GOROOT}/src/**/*.go#train')")
	fl.StringVar(&jsonl, "jsonl", "", "glob of JSONL files, one document per line")
	fl.StringVar(&field, "field", "text", "JSONL field holding the text")
	fl.StringVar(&parquet, "parquet", "", "glob of Parquet files, one document per row")
	fl.StringVar(&column, "column", "text", "Parquet string column holding the text")
	fl.StringVar(&chat, "chat", "", "glob of chat JSONL files, one conversation per line (needs --tokenizer PATH/tokenizer.json or --chat-template)")
	fl.StringVar(&chatTemplate, "chat-template", "", chatTemplateUsage)
	fl.StringVar(&onLong, "on-long", "error", "a conversation longer than seq_len+1 tokens: error, truncate or drop")
	fl.StringVar(&images, "images", "", "JSONL or CSV list of image files (PNG/JPEG) and captions")
	fl.IntVar(&imageSize, "image-size", 0, "scale images to this many pixels square (0 = keep; sides must divide by --patch)")
	fl.IntVar(&o.Channels, "channels", 0, "image colour channels: 1 (grey) or 3 (RGB, default for --images)")
	fl.StringVar(&fashion, "fashion-mnist", "", "folder of Fashion-MNIST IDX files (Debian: /usr/share/datasets/fashion-mnist)")
	fl.StringVar(&split, "split", "train", "Fashion-MNIST split: train or test")
	fl.IntVar(&o.SeqLen, "seq-len", 256, "positions per training sequence T (rows hold T+1 tokens); must equal model.seq_len")
	fl.StringVar(&o.Tokenizer, "tokenizer", "byte", "byte, o200k_base, cl100k_base (BPE, offline) or PATH/tokenizer.json (Hugging Face; copied into --out with tokenizer_config.json)")
	fl.IntVar(&o.Patch, "patch", 0, "image patch side in pixels (images only; default 4)")
	fl.IntVar(&o.ShardRows, "shard-rows", 65536, "rows per shard")
	fl.IntVar(&o.BatchRows, "batch-rows", 1024, "rows per Arrow record batch")
	fl.BoolVar(&quiet, "quiet", false, "no progress bar")
	fl.BoolVar(&asJSON, "json", false, "print the manifest as JSON on stdout")
	return c
}

// chatInput reads chat conversations for the tokenizer tokName, rendered with the chat
// template chatTemplate names (see loadChatTemplate).
func chatInput(pattern, tokName, chatTemplate, onLong string, seqLen int, stats *data.ChatStats, progress func(int64)) (func(func(*data.RawDoc) error) error, error) {
	switch data.OnLong(onLong) {
	case data.LongError, data.LongTruncate, data.LongDrop:
	default:
		return nil, usererr.New("--on-long", "%q is not one of error, truncate, drop", onLong)
	}
	tok, err := data.NewTokenizer(tokName)
	if err != nil {
		return nil, err
	}
	tmpl, err := loadChatTemplate(chatTemplate, tokName, tok)
	if err != nil {
		return nil, err
	}
	return data.ChatFiles(pattern, tmpl, seqLen+1, data.OnLong(onLong), stats, progress), nil
}

const chatTemplateUsage = "tokenizer_config.json whose chat_template and eos_token render chat data (default: the one beside --tokenizer PATH/tokenizer.json; examples/gochat has one for the byte tokenizer)"

// loadChatTemplate loads the chat template for tok from the tokenizer_config.json path
// (--chat-template) or, when path is "", from the one beside the tokenizer.json tokName.
func loadChatTemplate(path, tokName string, tok data.Tokenizer) (*data.ChatTemplate, error) {
	if path == "" {
		if !strings.HasSuffix(tokName, ".json") {
			return nil, usererr.New("--tokenizer", "chat data needs a chat template: --tokenizer PATH/tokenizer.json with tokenizer_config.json beside it, or --chat-template FILE")
		}
		path = filepath.Join(filepath.Dir(tokName), data.HFFiles[1])
	}
	return data.LoadChatTemplate(path, tok)
}

func numTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// printManifest prints a dataset's summary, or its manifest as JSON.
func printManifest(c *cobra.Command, path string, m *data.Manifest, asJSON bool) error {
	w := c.OutOrStdout()
	if asJSON {
		return printJSON(w, m)
	}
	bytes := int64(0)
	for _, s := range m.Shards {
		bytes += s.Bytes
	}
	L := int64(m.SeqLen + 1)
	fmt.Fprintf(w, "%s: %d rows of %d tokens in %d shards (%.1f MB), tokenizer %s (vocabulary %d)\n",
		path, m.Rows, L, len(m.Shards), float64(bytes)/1e6, m.Tokenizer, m.VocabSize)
	fmt.Fprintf(w, "%d documents, %d tokens, %.2f%% padding\n", m.Docs, m.Tokens, 100*(1-float64(m.Tokens)/float64(m.Rows*L)))
	if m.Patch > 0 {
		fmt.Fprintf(w, "images: patches of %dx%d pixels, %d channel(s)\n", m.Patch, m.Patch, m.Channels)
	}
	return nil
}

func newDataInspectCmd() *cobra.Command {
	var (
		rows   []int64
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "inspect DATASET",
		Short: "Show a dataset's statistics and decode rows back to text",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			sh, path, err := openDataset(args[0])
			if err != nil {
				return err
			}
			defer sh.Close()
			if err := printManifest(c, path, &sh.Manifest, asJSON); err != nil || len(rows) == 0 {
				return err
			}
			tok, err := data.OpenTokenizer(sh.Manifest.Tokenizer, filepath.Dir(path))
			if err != nil {
				return err
			}
			var r data.Row
			for _, i := range rows {
				if i < 0 || i >= sh.Manifest.Rows {
					return usererr.New("--row", "row %d is outside [0, %d)", i, sh.Manifest.Rows)
				}
				if err := sh.Row(i, &r); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "--- row %d: documents %v, not trained %v, images %v\n%s\n", i, r.Docs, r.NoLoss, r.Images, decodeRow(tok, &r))
			}
			return nil
		},
	}
	c.Flags().Int64SliceVar(&rows, "row", nil, "rows to decode (repeatable)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the manifest as JSON on stdout")
	return c
}

// decodeRow renders a row as text, documents separated by a marker line, each image as
// one <image: N patches> placeholder and trailing padding as <padding: N tokens>.
func decodeRow(tok data.Tokenizer, r *data.Row) string {
	var b strings.Builder
	img, start := 0, 0
	for d, n := range r.Docs {
		if d > 0 {
			b.WriteString("\n<|document|>\n")
		}
		end := start + int(n)
		if k := len(r.NoLoss); d == len(r.Docs)-1 && k >= 2 && int(r.NoLoss[k-2]) == start && int(r.NoLoss[k-1]) == end {
			fmt.Fprintf(&b, "<padding: %d tokens>", n) // the packer's padding: a last segment never trained on
			break
		}
		for t := start; t < end; {
			if img+1 < len(r.Images) && int(r.Images[img]) == t {
				fmt.Fprintf(&b, "<image: %d patches>", r.Images[img+1])
				t += int(r.Images[img+1])
				img += 2
				continue
			}
			next := end
			if img < len(r.Images) {
				next = min(next, int(r.Images[img]))
			}
			b.WriteString(tok.Decode(r.Tokens[t:next]))
			t = next
		}
		start = end
	}
	return b.String()
}

func newDataVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify DATASET",
		Short: "Check every shard's sha256 against the manifest and every row against the format",
		Long: `Check every shard's sha256 against the manifest and every row against the format.
DATASET is a manifest.json, its folder, or grpc://host:port/NAME (rows only: the
server checks the hashes).`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			sh, path, err := openDataset(args[0])
			if err != nil {
				return err
			}
			defer sh.Close()
			if err := sh.Verify(nil); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: %d shards, %d rows: every hash and row is good\n", path, len(sh.Manifest.Shards), sh.Manifest.Rows)
			return nil
		},
	}
}

// openDataset opens a manifest, a dataset folder or a grpc://host:port/NAME dataset.
func openDataset(spec string) (*data.Shards, string, error) {
	if strings.HasPrefix(spec, "grpc://") {
		sh, err := data.OpenRemote(spec)
		return sh, spec, err
	}
	if fi, err := os.Stat(spec); err == nil && fi.IsDir() {
		spec = filepath.Join(spec, data.ManifestName)
	}
	sh, err := data.OpenShards(spec, nil)
	return sh, spec, err
}

func newDataServeCmd() *cobra.Command {
	var o data.ServeOptions
	c := &cobra.Command{
		Use:   "serve DIR",
		Short: "Serve the datasets under DIR over Arrow Flight, as grpc://host:port/NAME",
		Long: `Serve every dataset folder DIR/NAME (holding manifest.json) to trainers, which read
grpc://host:port/NAME exactly as a local manifest. Listens on loopback by default; any
other address needs --tls-cert, --tls-key and --token (clients set HERD_DATA_CA and
HERD_DATA_TOKEN). Stops on interrupt.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if fi, err := os.Stat(args[0]); err != nil || !fi.IsDir() {
				return usererr.New(args[0], "not a folder of datasets")
			}
			srv := data.NewFlightServer(args[0])
			defer srv.Close()
			gs, lis, err := srv.Listen(o)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() { <-ctx.Done(); gs.GracefulStop() }()
			fmt.Fprintf(c.ErrOrStderr(), "serving %s on grpc://%s/NAME\n", args[0], lis.Addr())
			return gs.Serve(lis)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.Addr, "addr", "127.0.0.1:8815", "host:port to listen on")
	fl.StringVar(&o.CertFile, "tls-cert", "", "TLS certificate (PEM)")
	fl.StringVar(&o.KeyFile, "tls-key", "", "TLS private key (PEM)")
	fl.StringVar(&o.Token, "token", "", "token clients must send (HERD_DATA_TOKEN)")
	return c
}
