package metap

import (
	"bytes"
	"encoding/csv"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

func metapTable(t *testing.T) Table {
	t.Helper()
	tab, err := Plan(config("metap"), Shape{NHeads: 4}, target, hp, layout(256, 256, 768, 4, 512))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// CSV is for scripts: reading it back gives every value of the table exactly.
func TestCSVReadsBackExactly(t *testing.T) {
	tab := metapTable(t)
	var buf bytes.Buffer
	if err := tab.Write(&buf, "csv"); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != "name,shape,class,init_std,lr,weight_decay,eps,mult" || len(rows) != len(tab.Entries)+1 {
		t.Fatalf("header %v and %d rows, want %d rows", rows[0], len(rows)-1, len(tab.Entries))
	}
	for i, e := range tab.Entries {
		r := rows[i+1]
		if r[0] != e.Name || r[2] != string(e.Class) {
			t.Fatalf("row %d is %v, want %s", i, r, e.Name)
		}
		var dims []int
		for _, d := range strings.Split(r[1], "x") {
			n, err := strconv.Atoi(d)
			if err != nil {
				t.Fatalf("%s: shape %q", e.Name, r[1])
			}
			dims = append(dims, n)
		}
		if !equalEntry(Entry{Tensor: Tensor{e.Name, dims, e.Class}, InitStd: e.InitStd, LR: e.LR, WeightDecay: e.WeightDecay, Eps: e.Eps, Mult: e.Mult}, e) {
			t.Fatalf("%s: shape %q is not %v", e.Name, r[1], e.Shape)
		}
		for j, v := range []float64{e.InitStd, e.LR, e.WeightDecay, e.Eps, e.Mult} {
			got, err := strconv.ParseFloat(r[3+j], 64)
			if err != nil || got != v {
				t.Errorf("%s column %d: %q reads as %g, want %g", e.Name, 3+j, r[3+j], got, v)
			}
		}
	}
}

// Text and markdown carry the header facts and one row per tensor.
func TestTextAndMarkdown(t *testing.T) {
	tab := metapTable(t)
	for _, format := range []string{"text", "markdown"} {
		var buf bytes.Buffer
		if err := tab.Write(&buf, format); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		// Header, blank line, column names (plus the markdown rule), then the tensors.
		head := 3
		if format == "markdown" {
			head = 4
		}
		if len(lines) != head+len(tab.Entries) {
			t.Fatalf("%s: %d lines, want %d:\n%s", format, len(lines), head+len(tab.Entries), out)
		}
		if !strings.Contains(lines[0], "mode metap") && !strings.Contains(lines[0], "mode `metap`") {
			t.Errorf("%s: header %q does not name the mode", format, lines[0])
		}
		if !strings.Contains(lines[0], "attention scale 0.125") { // √16/32: proxy head dim 64/4 = 16, target 256/8 = 32
			t.Errorf("%s: header %q does not give the attention scale %g", format, lines[0], tab.AttnScale)
		}
		if !strings.Contains(lines[0], tab.Hash()[:16]) {
			t.Errorf("%s: header %q lacks the hash", format, lines[0])
		}
		for i, e := range tab.Entries {
			row := lines[head+i]
			if !strings.Contains(row, e.Name) || !strings.Contains(row, short(e.LR)) || !strings.Contains(row, short(e.Mult)) {
				t.Errorf("%s: row %q does not show %s with lr %s and mult %s", format, row, e.Name, short(e.LR), short(e.Mult))
			}
			if format == "markdown" && strings.Count(row, "|") != len(columns)+1 {
				t.Errorf("markdown row %q has %d cells, want %d", row, strings.Count(row, "|")-1, len(columns))
			}
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	err := metapTable(t).Write(&bytes.Buffer{}, "json")
	var u *usererr.Error
	if !errors.As(err, &u) || u.Where != "--format" || !strings.Contains(u.What, "text, csv, markdown") {
		t.Fatalf("want a user error at --format listing the formats, got %v", err)
	}
}
