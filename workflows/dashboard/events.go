package dashboard

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/herdml/herd/internal/ui"
	"github.com/herdml/herd/workflows/client"
)

// pingEvery is how often an idle stream sends a comment, which keeps proxies from
// closing it.
const pingEvery = 15 * time.Second

// serveEvents streams what changes, as Server-Sent Events: without parameters the runs
// table (event runs), with name one run's status and new history rows (events status and
// history), with sweep one sweep (event sweep). The first event of each kind goes out at
// once; later ones only when their body changed. The stream ends when the client goes.
func (a *API) serveEvents(w http.ResponseWriter, r *http.Request, q query) {
	ctx := r.Context()
	// What the stream is about must exist before it opens: a 404 is an answer the page
	// can show, a stream that never says anything is not.
	var first client.Status
	var err error
	switch {
	case q.name != "":
		first, err = client.GetStatus(ctx, a.c, q.name)
	case q.sweep != "":
		_, err = client.GetSweep(ctx, a.c, q.sweep)
	}
	if err != nil {
		notFoundOr(w, err)
		return
	}
	select {
	case a.streams <- struct{}{}:
		defer func() { <-a.streams }()
	default:
		ui.Error(w, http.StatusServiceUnavailable, "too many event streams open; close some of the dashboard's tabs")
		return
	}
	sse, err := ui.NewSSE(w)
	if err != nil {
		return
	}
	s := stream{sse: sse, last: map[string][]byte{}}
	var poll func() error
	var hist historyFeed
	dir := ""
	if q.name != "" {
		dir = a.runDir(ctx, first)
	}
	switch {
	case q.name != "":
		hist.name = q.name
		poll = func() error {
			st, err := client.GetStatus(ctx, a.c, q.name)
			if err != nil {
				return nil // a passing error: the next poll tries again
			}
			if st.Dir != "" {
				dir = st.Dir
			}
			return s.send("status", a.run(st), nil)
		}
	case q.sweep != "":
		poll = func() error {
			b, err := a.sweep(ctx, q.sweep)
			if err != nil {
				return nil
			}
			return s.send("sweep", b, nil)
		}
	default:
		poll = func() error {
			b, err := a.listRuns(ctx)
			if err != nil {
				return nil
			}
			// The time of the listing is not a change; it goes out with one.
			same, _ := json.Marshal(b)
			b.Now = time.Now().UTC().Format(time.RFC3339)
			return s.send("runs", b, same)
		}
	}
	follow := func() error {
		if q.name == "" {
			return nil
		}
		b, ok, err := hist.next(dir)
		if err != nil || !ok {
			return nil // a history half rewritten reads whole at the next look
		}
		return s.sendAlways("history", b)
	}
	if poll() != nil || follow() != nil {
		return
	}
	status, history, ping := time.NewTicker(a.o.StatusEvery), time.NewTicker(a.o.HistoryEvery), time.NewTicker(pingEvery)
	defer status.Stop()
	defer history.Stop()
	defer ping.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-status.C:
			err = poll()
		case <-history.C:
			err = follow()
		case <-ping.C:
			err = sse.Ping()
		}
		if err != nil {
			return // the client has gone
		}
	}
}

// stream is one open event stream and the last body it sent of each event.
type stream struct {
	sse  *ui.SSE
	last map[string][]byte
}

// send sends v as event when it differs from the last one sent; key, when set, is what
// is compared instead of v's encoding.
func (s *stream) send(event string, v any, key []byte) error {
	b, err := json.Marshal(v)
	if err != nil {
		return nil // a value JSON cannot carry (a NaN): skipped, the next may be fine
	}
	if key == nil {
		key = b
	}
	if prev, ok := s.last[event]; ok && bytes.Equal(prev, key) {
		return nil
	}
	s.last[event] = key
	return s.sse.Send(event, b)
}

// sendAlways sends v as event.
func (s *stream) sendAlways(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return s.sse.Send(event, b)
}
