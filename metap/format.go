package metap

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/herdml/herd/internal/usererr"
)

// Formats are the ways Write can print a table.
var Formats = []string{"text", "csv", "markdown"}

// columns are the per-tensor columns of every format.
var columns = []string{"name", "shape", "class", "init_std", "lr", "weight_decay", "eps", "mult"}

// Write prints the table: "text" is aligned columns for a terminal, "markdown" a table
// for a README, both headed by the mode, the attention scale and the hash; "csv" is one
// header line and one row per tensor with every value at full precision, for scripts.
func (t Table) Write(w io.Writer, format string) error {
	switch format {
	case "text":
		return t.writeText(w)
	case "markdown":
		return t.writeMarkdown(w)
	case "csv":
		return t.writeCSV(w)
	}
	return usererr.New("--format", "unknown format %q; allowed: %s", format, strings.Join(Formats, ", "))
}

func (t Table) writeText(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "mode %s, attention scale %s, hash %s\n\n", t.Mode, t.attnScaleText(), t.Hash()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	for _, e := range t.Entries {
		fmt.Fprintln(tw, strings.Join(e.cells(short), "\t"))
	}
	return tw.Flush()
}

func (t Table) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "mode `%s`, attention scale %s, hash `%s`\n\n", t.Mode, t.attnScaleText(), t.Hash()[:16])
	fmt.Fprintf(&b, "| %s |\n", strings.Join(columns, " | "))
	fmt.Fprintf(&b, "|%s\n", strings.Repeat(" --- |", len(columns)))
	for _, e := range t.Entries {
		c := e.cells(short)
		c[0] = "`" + c[0] + "`"
		fmt.Fprintf(&b, "| %s |\n", strings.Join(c, " | "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (t Table) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(columns); err != nil {
		return err
	}
	for _, e := range t.Entries {
		if err := cw.Write(e.cells(full)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// cells are the entry's columns, its numbers printed by num.
func (e Entry) cells(num func(float64) string) []string {
	dims := make([]string, len(e.Shape))
	for i, d := range e.Shape {
		dims[i] = strconv.Itoa(d)
	}
	return []string{e.Name, strings.Join(dims, "x"), string(e.Class),
		num(e.InitStd), num(e.LR), num(e.WeightDecay), num(e.Eps), num(e.Mult)}
}

func (t Table) attnScaleText() string {
	if t.AttnScale == 0 {
		return "1/sqrt(head_dim) (model default)"
	}
	return short(t.AttnScale)
}

// short prints four significant digits, enough to read a table; full prints the shortest
// decimal that reads back to the same float64.
func short(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
func full(v float64) string  { return strconv.FormatFloat(v, 'g', -1, 64) }
