package dashboard

import (
	"errors"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/trainer/history"
)

// historyPath is the history file of a run whose checkpoints are in dir (Progress.Dir),
// a folder or a bucket prefix; "" when the run has no checkpoint folder yet.
func historyPath(dir string) string {
	if dir == "" {
		return ""
	}
	return storage.Join(dir, history.FileName)
}

// readHistory reads the history of a run whose checkpoints are in dir: none (no error)
// while the run has not written one.
func readHistory(dir string) ([]history.Row, error) {
	p := historyPath(dir)
	if p == "" {
		return nil, nil
	}
	rows, err := history.ReadAt(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return rows, err
}

// num is a float that encodes NaN and infinities (a step without an eval, FP8 columns
// of an fp32 run) as null, which JSON has instead.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// historyBody is /api/history and the event stream's history event: trainer/history's
// rows as columns, one array element per row.
type historyBody struct {
	Name        string        `json:"name"`
	Rows        int           `json:"rows"`
	Reset       bool          `json:"reset"`
	Step        []int64       `json:"step"`
	Tokens      []int64       `json:"tokens"`
	Time        []int64       `json:"time"` // unix milliseconds
	Loss        []num         `json:"loss"`
	Aux         []num         `json:"aux_loss"`
	LR          []num         `json:"lr"`
	GradNorm    []num         `json:"grad_norm"`
	TokensPerS  []num         `json:"tokens_per_s"`
	StepSeconds []num         `json:"step_seconds"`
	EvalLoss    []num         `json:"eval_loss"`
	EvalBPB     []num         `json:"eval_bpb"`
	FP8AmaxMax  []num         `json:"fp8_amax_max"`
	FP8ScaleMin []num         `json:"fp8_scale_min"`
	FP8ScaleMax []num         `json:"fp8_scale_max"`
	ExpertLoad  [][][]float64 `json:"expert_load"`
}

// columns turns rows into a historyBody; reset says that they replace what the reader
// holds from their first step on.
func columns(name string, rows []history.Row, reset bool) historyBody {
	n := len(rows)
	b := historyBody{Name: name, Rows: n, Reset: reset,
		Step: make([]int64, n), Tokens: make([]int64, n), Time: make([]int64, n),
		Loss: make([]num, n), Aux: make([]num, n), LR: make([]num, n), GradNorm: make([]num, n),
		TokensPerS: make([]num, n), StepSeconds: make([]num, n), EvalLoss: make([]num, n), EvalBPB: make([]num, n),
		FP8AmaxMax: make([]num, n), FP8ScaleMin: make([]num, n), FP8ScaleMax: make([]num, n),
		ExpertLoad: make([][][]float64, n)}
	for i, r := range rows {
		b.Step[i], b.Tokens[i], b.Time[i] = r.Step, r.Tokens, r.Time.UnixMilli()
		b.Loss[i], b.Aux[i], b.LR[i], b.GradNorm[i] = num(r.Loss), num(r.Aux), num(r.LR), num(r.GradNorm)
		b.TokensPerS[i], b.StepSeconds[i] = num(r.TokensPerS), num(r.StepSeconds)
		b.EvalLoss[i], b.EvalBPB[i] = num(r.EvalLoss), num(r.EvalBPB)
		b.FP8AmaxMax[i], b.FP8ScaleMin[i], b.FP8ScaleMax[i] = num(r.FP8AmaxMax), num(r.FP8ScaleMin), num(r.FP8ScaleMax)
		b.ExpertLoad[i] = r.ExpertLoad
	}
	return b
}

// fileStamp identifies a version of a file cheaply: a history only grows by appends or
// is rewritten whole on resume, and either changes its size or its modification time.
type fileStamp struct {
	size int64
	mod  time.Time
}

// bucketPoll is how often a history in a bucket is read again: an object has no stamp
// as cheap as a file's, and a bucket's copy changes only when a checkpoint commits.
const bucketPoll = 5 * time.Second

func stampOf(path string) (fileStamp, bool) {
	if storage.IsURL(path) {
		return fileStamp{mod: time.Now().Truncate(bucketPoll)}, true
	}
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{st.Size(), st.ModTime()}, true
}

// evalCache keeps each history's last eval loss by file stamp, so that listing 150 runs
// every second reads only the histories that changed.
type evalCache struct {
	mu sync.Mutex
	m  map[string]evalEntry
}

type evalEntry struct {
	stamp fileStamp
	eval  *float64
}

// last is the last eval loss in the history of the run whose checkpoints are in dir; nil
// when there is none (no history, no eval yet, unreadable).
func (c *evalCache) last(dir string) *float64 {
	p := historyPath(dir)
	if p == "" {
		return nil
	}
	st, ok := stampOf(p)
	if !ok {
		return nil
	}
	c.mu.Lock()
	e, hit := c.m[p]
	c.mu.Unlock()
	if hit && e.stamp == st {
		return e.eval
	}
	rows, err := history.ReadAt(p)
	if err != nil {
		return nil
	}
	e = evalEntry{stamp: st}
	for i := len(rows) - 1; i >= 0; i-- {
		if v := finite(rows[i].EvalLoss); v != nil {
			e.eval = v
			break
		}
	}
	c.mu.Lock()
	c.m[p] = e
	c.mu.Unlock()
	return e.eval
}

// historyFeed follows one run's history for an event stream: each call of next returns
// the rows a reader who has everything sent so far lacks, and whether they replace what
// it holds from their first step on (the file was cut back by a resume).
type historyFeed struct {
	name  string
	stamp fileStamp
	sent  []rowKey // the rows sent so far, in order
}

// rowKey identifies a row: the step and when it was trained. A history rewritten on
// resume keeps its earlier rows as they were, so their keys stay equal.
type rowKey struct{ step, ms int64 }

// next reads the history of the run whose checkpoints are in dir when it changed and
// returns what to send; ok is false when there is nothing new.
func (f *historyFeed) next(dir string) (b historyBody, ok bool, err error) {
	p := historyPath(dir)
	if p == "" {
		return b, false, nil
	}
	st, exists := stampOf(p)
	if !exists || st == f.stamp {
		return b, false, nil
	}
	rows, err := history.ReadAt(p)
	if errors.Is(err, os.ErrNotExist) { // a bucket's run before its first checkpoint
		return b, false, nil
	}
	if err != nil {
		return b, false, err
	}
	f.stamp = st
	same := 0
	for same < len(rows) && same < len(f.sent) && f.sent[same] == (rowKey{rows[same].Step, rows[same].Time.UnixMilli()}) {
		same++
	}
	reset := same < len(f.sent)
	if !reset && same == len(rows) {
		return b, false, nil
	}
	f.sent = f.sent[:same]
	for _, r := range rows[same:] {
		f.sent = append(f.sent, rowKey{r.Step, r.Time.UnixMilli()})
	}
	return columns(f.name, rows[same:], reset), true, nil
}
