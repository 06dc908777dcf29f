package dashboard_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/internal/ui"
	"github.com/herdml/herd/workflows/dashboard"
	"github.com/herdml/herd/workflows/dashboard/dashtest"
)

// BenchmarkFleet measures what the dashboard's pages wait for with 50 runs and a
// 100-trial sweep running on one embedded server (dashtest.Fleet: real TrainRun
// workflows, held mid-run): /api/runs (the runs page), /api/sweep (the sweep page) and
// the first event of /api/events (the live runs table), each the median over b.N
// requests, on loopback. Measured, never asserted.
//
//	go test ./workflows/dashboard -run '^$' -bench Fleet -benchtime 20x
func BenchmarkFleet(b *testing.B) {
	e := dashtest.Start(b, dashboard.Options{})
	e.Fleet(b, 50, 100)
	var runs, sweep, events []time.Duration
	var runsBytes, sweepBytes int
	b.ResetTimer()
	// A dashboard shares its listing of the runs for a while: each request of the runs
	// table goes to a dashboard of its own, so that it measures a listing of its own.
	fresh := func() string {
		srv := httptest.NewServer(ui.Handler(dashboard.New(e.Conn.Client, dashboard.Options{}), ui.Options{Loopback: true}))
		b.Cleanup(srv.Close)
		return srv.URL
	}
	for b.Loop() {
		d, n := timeGet(b, fresh()+"/api/runs")
		runs, runsBytes = append(runs, d), n
		d, n = timeGet(b, e.URL+"/api/sweep?name=fleet-sweep")
		sweep, sweepBytes = append(sweep, d), n
		events = append(events, firstEvent(b, fresh()+"/api/events"))
	}
	b.ReportMetric(ms(median(runs)), "ms/runs")
	b.ReportMetric(ms(median(sweep)), "ms/sweep")
	b.ReportMetric(ms(median(events)), "ms/first-event")
	b.ReportMetric(float64(runsBytes)/1024, "KiB/runs")
	b.ReportMetric(float64(sweepBytes)/1024, "KiB/sweep")
}

func timeGet(b *testing.B, u string) (time.Duration, int) {
	b.Helper()
	t0 := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return d, len(body)
}

// firstEvent is the time from opening u to its first event's end.
func firstEvent(b *testing.B, u string) time.Duration {
	b.Helper()
	t0 := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			return time.Since(t0)
		}
	}
	b.Fatalf("%s ended without an event: %v", u, sc.Err())
	return 0
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
