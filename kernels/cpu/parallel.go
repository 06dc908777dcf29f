package cpu

import (
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Parallel loops run on a pool of persistent worker goroutines, so that a training step
// starts no goroutine and allocates nothing: a step makes hundreds of parallel calls, and
// a goroutine and a closure per call were most of its allocations.
//
// An op describes its loop as a task: a struct of its arguments with a run(lo, hi) method
// over a range of indices. The task is copied into a recycled box (a closure would be a
// fresh heap object every call), the box is handed to the calling goroutine and to the
// idle workers, and each of them takes the next chunk of indices from a shared counter
// until none is left. A worker delayed by other work on the machine then holds up one
// chunk, not a fixed share, and a call made while every worker is busy (a nested loop, or
// another model's step in the same process) simply runs on its caller.
//
// Determinism: the chunks depend only on n, the grain and GOMAXPROCS, and a task must
// compute each index the same way whoever runs it and write only that index's outputs.
// Which goroutine runs a chunk is then left to chance without changing a bit.

// ranger is a parallel loop's body: it handles indices [lo, hi).
type ranger interface{ run(lo, hi int) }

// task is the constraint of parallelFor's type parameters: P is *T and has run.
type task[T any] interface {
	*T
	ranger
}

// loop is one parallel call's shared state.
type loop struct {
	body   ranger
	n, per int // indices, and indices per chunk
	chunks int
	next   atomic.Int64 // next chunk to take
	helped sync.WaitGroup
	left   atomic.Int32 // invited workers not done yet: the caller polls it before it waits on helped
}

// work runs chunks until none is left.
func (l *loop) work() {
	for c := int(l.next.Add(1) - 1); c < l.chunks; c = int(l.next.Add(1) - 1) {
		l.body.run(c*l.per, min(l.n, (c+1)*l.per))
	}
}

// box is a loop with its task, recycled per task type.
type box[T any] struct {
	loop
	task T
}

// parallelFor runs t.run over [0, n) in chunks of at least grain indices, at most
// chunksPerThread per thread, on up to GOMAXPROCS goroutines.
func parallelFor[T any, P task[T]](n, grain int, t T) {
	if n <= 0 {
		return
	}
	threads := runtime.GOMAXPROCS(0)
	chunks := min(chunksPerThread*threads, (n+max(grain, 1)-1)/max(grain, 1))
	run[T, P](n, (n+chunks-1)/chunks, threads, t)
}

// take returns a released *T, or a new zero one: scratch that an op keeps from call to
// call without a garbage collection taking it back (as sync.Pool would).
func take[T any]() *T { return recycled[T]().get() }

// release gives v back for a later take; the caller must not use it after.
func release[T any](v *T) { recycled[T]().put(v) }

// chunksPerThread lets the threads even out their load: a thread slowed down by other
// work on the machine takes fewer chunks.
const chunksPerThread = 4

// parallelChunks runs t.run(i, i+1) for every i in [0, n) on up to threads goroutines.
func parallelChunks[T any, P task[T]](n, threads int, t T) {
	if n > 0 {
		run[T, P](n, 1, threads, t)
	}
}

// run runs t over [0, n) in chunks of per indices on the caller and up to threads-1
// idle workers.
func run[T any, P task[T]](n, per, threads int, t T) {
	b := recycled[box[T]]().get()
	b.task = t
	l := &b.loop
	l.body, l.n, l.per = P(&b.task), n, per
	l.chunks = (n + per - 1) / per
	l.next.Store(0)
	if helpers := min(threads, l.chunks) - 1; helpers > 0 {
		workers.invite(l, helpers)
	}
	l.work()
	for t0 := time.Now(); l.left.Load() > 0 && time.Since(t0) < spin; {
		runtime.Gosched()
	}
	l.helped.Wait()
	var zero T
	b.task, l.body = zero, nil // release the task's slices to the garbage collector
	recycled[box[T]]().put(b)
}

// workers is the pool: the idle workers, each waiting on its own inbox.
var workers pool

type pool struct {
	mu    sync.Mutex
	idle  []chan *loop
	count int // workers started
}

// invite hands l to up to k idle workers, starting workers until there are GOMAXPROCS-1.
func (p *pool) invite(l *loop, k int) {
	p.mu.Lock()
	for p.count < runtime.GOMAXPROCS(0)-1 {
		inbox := make(chan *loop, 1)
		p.idle = append(p.idle, inbox)
		p.count++
		go worker(inbox)
	}
	if cap(p.idle) < p.count {
		// Room for every worker, so that returning to the list never allocates.
		p.idle = append(make([]chan *loop, 0, p.count), p.idle...)
	}
	k = min(k, len(p.idle))
	invited := p.idle[len(p.idle)-k:]
	p.idle = p.idle[:len(p.idle)-k]
	l.helped.Add(k)
	l.left.Store(int32(k))
	for _, inbox := range invited {
		inbox <- l // never blocks: an idle worker's inbox is empty
	}
	p.mu.Unlock()
}

// worker runs the loops it is handed. It is back on the idle list before it tells the
// loop's caller it is done, so that the caller's next loop can invite it again at once.
func worker(inbox chan *loop) {
	for {
		l := awaitLoop(inbox)
		l.work()
		workers.mu.Lock()
		workers.idle = append(workers.idle, inbox)
		workers.mu.Unlock()
		l.left.Add(-1)
		l.helped.Done()
	}
}

// spin is how long an idle worker polls its inbox, and a caller its helpers' progress,
// before blocking. A step's parallel calls mostly come microseconds apart and a parked
// goroutine takes tens of microseconds to run again once woken, so with blocking alone a
// short loop's helper joins when the caller has done most of it. OpenMP runtimes spin far
// longer (Intel's KMP_BLOCKTIME: 200 ms); 200 µs bounds what an idle pool burns on a
// shared machine. BenchmarkForkJoin measures it (docs/kernels.md, "Waking the workers").
const spin = 200 * time.Microsecond

// awaitLoop returns the next loop handed to inbox, polling it for spin before blocking on it.
// Gosched between polls lets a goroutine woken onto this thread's queue (the caller of
// the loop just finished, waiting for it) run at once.
func awaitLoop(inbox chan *loop) *loop {
	for t0 := time.Now(); time.Since(t0) < spin; {
		select {
		case l := <-inbox:
			return l
		default:
			runtime.Gosched()
		}
	}
	return <-inbox
}

// freeList keeps released values of one type for reuse. Unlike sync.Pool it keeps them
// through garbage collections, so a steady state allocates nothing, ever.
type freeList[T any] struct {
	mu   sync.Mutex
	free []*T
}

func (f *freeList[T]) get() *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.free); n > 0 {
		v := f.free[n-1]
		f.free = f.free[:n-1]
		return v
	}
	return new(T)
}

func (f *freeList[T]) put(v *T) {
	f.mu.Lock()
	f.free = append(f.free, v)
	f.mu.Unlock()
}

// recycled returns the free list of type T.
func recycled[T any]() *freeList[T] { return singleton[freeList[T]]() }

// singletons holds one *T per type T: generic code's package-level variables.
var singletons sync.Map

// singleton returns the one *T of type T, zero when first made.
func singleton[T any]() *T {
	key := reflect.TypeFor[T]()
	if v, ok := singletons.Load(key); ok {
		return v.(*T)
	}
	v, _ := singletons.LoadOrStore(key, new(T))
	return v.(*T)
}
