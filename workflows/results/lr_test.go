package results

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"image/png"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/herdml/herd/workflows"
)

// The per-curve optimal-LR table and the LR plot of a generated transfer experiment:
// metap.mode x widths (flow mappings, listed out of numeric order) x 7 octaves, each
// curve a parabola in log2 LR whose vertex is known, plus a stopped and a diverged trial
// that must not count. The table, read back as CSV, names each curve by the mapping key
// that tells the widths apart, orders them numerically, finds each vertex, and gives each
// panel's octave shift.
func TestSweepOptimalLR(t *testing.T) {
	widths := []int{128, 32, 64}
	// The optimum in log2 LR: fixed under metap, one octave lower per width doubling under sp.
	opt := func(mode string, d int) float64 {
		if mode == "metap" {
			return -7
		}
		return -7 - math.Log2(float64(d)/32)
	}
	loss := func(mode string, d int, x float64) float64 {
		return 3 - 0.1*math.Log2(float64(d)) + 0.05*(x-opt(mode, d))*(x-opt(mode, d))
	}
	p := Sweep{Name: "transfer", Metric: "eval_loss", Minimize: true}
	for _, mode := range []string{"sp", "metap"} {
		for _, d := range widths {
			for x := -11; x <= -5; x++ {
				tr := workflows.TrialState{Index: len(p.Trials), State: workflows.TrialCompleted, Params: []string{
					"metap.mode=" + mode,
					fmt.Sprintf("model={d_model: %d, n_heads: %d, ffn_hidden: %d, n_layers: 2}", d, d/32, 3*d),
					"train.optim.lr=" + strconv.FormatFloat(math.Exp2(float64(x)), 'g', -1, 64),
				}, Final: loss(mode, d, float64(x))}
				switch {
				case mode == "sp" && d == 32 && x == -11:
					tr.State, tr.Final, tr.RungLoss = workflows.TrialStopped, 0, []float64{0.5} // better, but stopped
				case mode == "metap" && d == 64 && x == -5:
					tr.Final = math.NaN() // diverged
				}
				p.Trials = append(p.Trials, tr)
			}
		}
	}
	var b bytes.Buffer
	if ok, err := p.WriteOptimalLR(&b); !ok || err != nil {
		t.Fatalf("WriteOptimalLR: %v, %v", ok, err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if h := strings.Join(rows[0], ","); h != "panel,curve,lr,log2_lr,eval_loss,octave_shift" {
		t.Fatalf("header %s", h)
	}
	var want [][]string
	for _, mode := range []string{"metap", "sp"} { // panels in order of their values
		shift := opt(mode, 32) - opt(mode, 128)
		for _, d := range []int{32, 64, 128} {
			x := opt(mode, d)
			want = append(want, []string{"mode " + mode, fmt.Sprintf("d_model %d", d), strconv.FormatFloat(math.Exp2(x), 'g', -1, 64),
				strconv.FormatFloat(x, 'g', -1, 64), strconv.FormatFloat(loss(mode, d, x), 'g', -1, 64), strconv.FormatFloat(shift, 'g', -1, 64)})
		}
	}
	if got := fmt.Sprint(rows[1:]); got != fmt.Sprint(want) {
		t.Fatalf("optimal_lr.csv\n%v\nwant\n%v", got, want)
	}
	if rows[len(rows)-1][5] != "2" || rows[1][5] != "0" {
		t.Fatalf("shifts: metap %s, sp %s; want 0 and 2", rows[1][5], rows[len(rows)-1][5])
	}

	var out strings.Builder
	p.PrintOptimalLR(&out)
	if !strings.Contains(out.String(), "mode sp: the optimal lr moves 2 octaves") {
		t.Fatalf("printed table:\n%s", out.String())
	}

	b.Reset()
	if ok, err := p.WriteLRCurves(&b); !ok || err != nil {
		t.Fatalf("WriteLRCurves: %v, %v", ok, err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dy() <= r.Dx()/2 {
		t.Fatalf("lr.png %v: no room under the two panels for the legend", r)
	}

	// Without the LR swept there is no table.
	p.Trials = p.Trials[:1]
	p.Trials[0].Params = p.Trials[0].Params[:2]
	if ok, err := p.WriteOptimalLR(&b); ok || err != nil {
		t.Fatalf("optimal LR without an LR key: %v, %v", ok, err)
	}
}

// A swept flow mapping is named by the fewest varying keys that tell its values apart;
// a scalar by its key's last part.
func TestSweepBriefLabels(t *testing.T) {
	all := []string{"{d_model: 64, n_layers: 2, vocab: 256}", "{d_model: 64, n_layers: 4, vocab: 256}", "{d_model: 128, n_layers: 2, vocab: 256}"}
	for i, want := range []string{"d_model 64, n_layers 2", "d_model 64, n_layers 4", "d_model 128, n_layers 2"} {
		if got, _ := brief("model", all[i], all); got != want {
			t.Errorf("brief(%s) = %q, want %q", all[i], got, want)
		}
	}
	if got, order := brief("model.n_layers", "8", []string{"2", "8"}); got != "n_layers 8" || fmt.Sprint(order) != "[8]" {
		t.Errorf("scalar: %q %v", got, order)
	}
	if compareValues([]string{"64"}, []string{"128"}) >= 0 || compareValues([]string{"metap"}, []string{"sp"}) >= 0 {
		t.Error("64 after 128, or metap after sp")
	}
}
