package trainer

import (
	"fmt"
	"sync"

	"github.com/herdml/herd/trainer/checkpoint"
)

// uploader writes checkpoints in the background (train.checkpoint.async > 0), as
// torchtitan's DCP async_mode does: at the step boundary the trainer copies its state to
// host memory and queues it; one goroutine saves the queued checkpoints in step order and
// applies retention after each, so that saves never race each other or retention. The
// queue holds at most Async checkpoints: queueing one more blocks the trainer until the
// oldest is written. The first failure is kept and fails the run at its next checkpoint or
// at Flush; nothing queued after it is written, so the newest committed checkpoint is
// always one whose predecessors were all written.
type uploader struct {
	queue chan upload
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error // the first failure
}

// upload is one checkpoint to write.
type upload struct {
	snap    checkpoint.Snapshot
	store   checkpoint.Storage
	keep    int
	history []byte // the metrics history to put in a bucket first (history.go); nil for none
}

// commit writes up: the metrics history of a run in a bucket first, so that the newest
// committed checkpoint always has its history, then the checkpoint, then the retention
// policy. It returns the checkpoint's name.
func (up upload) commit() (string, error) {
	if err := putHistory(up.store, up.history); err != nil {
		return "", err
	}
	name, err := checkpoint.Save(up.store, up.snap)
	if err != nil {
		return "", err
	}
	_, err = checkpoint.Retain(up.store, up.keep, 0, name)
	return name, err
}

func newUploader(n int) *uploader {
	u := &uploader{queue: make(chan upload, n)}
	go u.loop()
	return u
}

func (u *uploader) loop() {
	for up := range u.queue {
		if u.failed() == nil {
			if _, err := up.commit(); err != nil {
				u.mu.Lock()
				u.err = fmt.Errorf("writing checkpoint %s in the background: %w", checkpoint.Name(up.snap.State.Step), err)
				u.mu.Unlock()
			}
		}
		u.wg.Done()
	}
}

func (u *uploader) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// add queues up, blocking while the queue is full; it returns an earlier failure instead.
func (u *uploader) add(up upload) error {
	if err := u.failed(); err != nil {
		return err
	}
	u.wg.Add(1)
	u.queue <- up
	return nil
}

// flush waits until every queued checkpoint is written, and returns the first failure.
func (u *uploader) flush() error {
	u.wg.Wait()
	return u.failed()
}

// close flushes and stops the goroutine.
func (u *uploader) close() error {
	err := u.flush()
	close(u.queue)
	return err
}

// hostCopy is h copied, for a checkpoint written while training changes h.
func hostCopy(h hostState) hostState {
	return hostState{append([]float32(nil), h.params...), append([]float32(nil), h.m...), append([]float32(nil), h.v...)}
}
