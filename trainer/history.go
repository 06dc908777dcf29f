package trainer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/history"
)

// This file is the run's metrics history (trainer/history, docs/metrics.md), which rank 0
// writes: it owns the checkpoints, and the history follows them.
//
// In a checkpoint folder the history is the folder's history.arrows, appended in place.
// An object in a bucket cannot be appended to, so a run whose checkpoints are in a bucket
// keeps the live file in a local folder (historyCacheDir), and uploads the whole file
// (small beside a checkpoint: about 180 bytes a step as history.Open compacts it, 1.3 KB
// a step appended since) to the bucket's history.arrows before each checkpoint commits;
// a resume starts from the bucket's copy. Either way the history
// always reaches at least the newest committed checkpoint, and resuming truncates it to
// that checkpoint's step (history.Open), so that a resumed run's history equals an
// uninterrupted run's.
//
// The history never stops a run: when it cannot be opened or written, Options.Warn says
// so once and the run trains on without it (the rows written so far stay readable). A
// failed upload to a bucket fails the checkpoint it goes with, as a failed write of the
// checkpoint's own files does, so that a committed checkpoint always has its history.

// HistoryCacheEnv moves the local folder that holds the live history of runs whose
// checkpoints are in a bucket (default: herd/history under the user cache folder,
// ~/.cache on Linux).
const HistoryCacheEnv = "HERD_HISTORY_CACHE"

// historyCacheDir is the local folder of the live history of the run whose checkpoints
// are at url (s3://bucket/prefix/run): <cache>/<bucket>/<prefix>/run, as the shard cache
// lays out its copies (data.CacheEnv).
func historyCacheDir(url string) (string, error) {
	root := os.Getenv(HistoryCacheEnv)
	if root == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no user cache folder for the metrics history (%w); set %s", err, HistoryCacheEnv)
		}
		root = filepath.Join(d, "herd", "history")
	}
	return filepath.Join(root, filepath.FromSlash(path.Clean(strings.TrimPrefix(url, storage.Scheme)))), nil
}

// runHistory is rank 0's open history.
type runHistory struct {
	w      *history.Writer
	local  string          // the folder holding the live file
	bucket *storage.Bucket // where it is uploaded at each checkpoint; nil for a folder
	tokens int64           // tokens of one optimizer step, all ranks
}

// openHistory opens the run's history on rank 0 of a trainer that trains, keeping the
// rows up to the step the trainer is at (the checkpoint it resumed from, or 0). Run calls
// it once, before its first step. Failing, it warns and leaves tr.hist nil.
func (tr *Trainer) openHistory() {
	if tr.rank != 0 || tr.train == nil || tr.histTried {
		return
	}
	tr.histTried = true
	h := &runHistory{tokens: int64(tr.Cfg.Train.GlobalBatch) * int64(tr.Cfg.Model.SeqLen)}
	var err error
	switch s := tr.store.(type) {
	case checkpoint.Dir:
		h.local = s.Root
	case checkpoint.Objects:
		h.bucket = s.B
		if h.local, err = historyCacheDir(s.String()); err == nil {
			err = h.download()
		}
	default:
		return
	}
	if err == nil {
		h.w, err = history.Open(h.local, tr.step)
	}
	if err != nil {
		tr.warn(fmt.Sprintf("no metrics history for this run: %v", err))
		return
	}
	if last := h.w.LastStep(); last != tr.step {
		tr.warn(fmt.Sprintf("the metrics history of %s lacks steps %d to %d (lost, or written by a herd without one); it goes on from step %d",
			checkpoint.Where(tr.store, "", ""), last+1, tr.step, tr.step+1))
	}
	tr.hist = h
}

// download replaces the local live file with the bucket's copy, or removes it when the
// bucket has none.
func (h *runHistory) download() error {
	if err := os.MkdirAll(h.local, 0o755); err != nil {
		return err
	}
	p := filepath.Join(h.local, history.FileName)
	r, err := h.bucket.Get(history.FileName)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading %s: %w", storage.Join(h.bucket.String(), history.FileName), err)
	}
	return os.WriteFile(p, b, 0o644)
}

// appendHistory writes st's row: the step's cumulative tokens over all ranks, its wall
// time d (the step alone, not its evaluation or checkpoint), the evaluation that ran
// after it, and the FP8 scaling state it left. A failed write warns and ends the history.
func (tr *Trainer) appendHistory(st Stats, d time.Duration) {
	h := tr.hist
	if h == nil || h.w == nil {
		return
	}
	secs := d.Seconds()
	r := history.Row{
		Step: st.Step, Tokens: st.Step * h.tokens, Time: time.Now(),
		Loss: st.Loss, Aux: st.Aux, LR: st.LR, GradNorm: st.GradNorm,
		TokensPerS: float64(h.tokens) / secs, StepSeconds: secs,
		EvalLoss: math.NaN(), EvalBPB: math.NaN(),
		ExpertLoad:  st.ExpertLoad,
		FP8AmaxMax:  math.NaN(),
		FP8ScaleMin: math.NaN(), FP8ScaleMax: math.NaN(),
	}
	if st.Eval != nil {
		r.EvalLoss, r.EvalBPB = st.Eval.Loss, st.Eval.BitsPerByte
	}
	if tr.fp8 != nil {
		r.FP8AmaxMax, r.FP8ScaleMin, r.FP8ScaleMax = tr.fp8.Summary()
	}
	if err := h.w.Append(r); err != nil {
		tr.stopHistory(fmt.Sprintf("the metrics history stops at step %d: %v", st.Step-1, err))
	}
}

// stopHistory closes the writer after a failure and says so; the run goes on without
// history.
func (tr *Trainer) stopHistory(msg string) {
	_ = tr.hist.w.Close()
	tr.hist.w = nil
	tr.warn(msg)
}

// historyUpload is the live file's content to upload before a checkpoint of a run in a
// bucket commits; nil for a folder, or once the history has stopped.
func (tr *Trainer) historyUpload() []byte {
	h := tr.hist
	if h == nil || h.w == nil || h.bucket == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(h.local, history.FileName))
	if err != nil {
		tr.stopHistory(fmt.Sprintf("the metrics history stops at step %d: %v", tr.step, err))
		return nil
	}
	return b
}

// putHistory uploads a history file's content beside the checkpoints in a bucket.
func putHistory(store checkpoint.Storage, b []byte) error {
	o, ok := store.(checkpoint.Objects)
	if !ok || b == nil {
		return nil
	}
	if err := o.B.Put(history.FileName, b); err != nil {
		return fmt.Errorf("uploading the metrics history: %w", err)
	}
	return nil
}

// closeHistory closes the history; the live copy of a bucket's run is removed, as the
// bucket holds it up to the last checkpoint. The next Run opens it again, truncated to
// the step the trainer is then at: Resume closes it so, having loaded a checkpoint.
func (tr *Trainer) closeHistory() error {
	h := tr.hist
	tr.hist, tr.histTried = nil, false
	if h == nil || h.w == nil {
		return nil
	}
	err := h.w.Close()
	if h.bucket != nil {
		_ = os.Remove(filepath.Join(h.local, history.FileName))
	}
	return err
}
