// Command herd trains and fine-tunes Llama-4-style mixture-of-experts transformers and
// orchestrates that training durably. It is thin: each subcommand turns flags into calls
// to herd's packages; see README.md for the commands and the config reference.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// beforeStep is every trainer's Options.BeforeStep in this process: `herd train`'s and
// the segments' of the workers that run, resume, sweep and worker start. Nil: only the
// tests set it (cmd/herd's TestMain), to slow training down or hold a run at a step.
var beforeStep func(ctx context.Context, run string, done int64)

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	// One line, so that scripts and log scrapers see the whole message.
	fmt.Fprintln(os.Stderr, "herd: "+strings.Join(strings.Fields(err.Error()), " "))
	if usererr.Is(err) {
		os.Exit(2)
	}
	os.Exit(1)
}
