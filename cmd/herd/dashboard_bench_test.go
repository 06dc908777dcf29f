package main

import (
	"fmt"
	"slices"
	"testing"

	"github.com/herdml/herd/workflows/dashboard"
	"github.com/herdml/herd/workflows/dashboard/dashtest"
)

// Must-show 3, the page's side: how long headless Chromium takes from navigation to the
// runs table rendered with every row, and to the sweep page's trials table, with 50 runs
// and a 100-trial sweep on the embedded server (dashtest.Fleet: real TrainRun workflows,
// held after their first segment so that they stay running while measured). The page
// records the time itself (performance.now() at its first full render, from navigation
// start: data-render-ms, and data-data-ms when the data came, which separates the
// server's share from the page's); the figures are medians over b.N fresh loads. A
// measurement, never an assertion:
//
//	go test ./cmd/herd -run '^$' -bench DashboardLoad -benchtime 9x
func BenchmarkDashboardLoad(b *testing.B) {
	chromium(b)
	e := dashtest.Start(b, dashboard.Options{})
	const runs, trials = 50, 100
	e.Fleet(b, runs, trials)
	ctx := newTab(b)

	// measure loads route b.N times and returns the medians of when table's data came
	// and when it was rendered with rows rows.
	measure := func(route, table string, rows int) (data, render float64) {
		var dataMs, renderMs []float64
		for range b.N {
			open(b, ctx, e.URL, route)
			waitJS(b, ctx, fmt.Sprintf("%s to render %d rows", table, rows),
				fmt.Sprintf(`document.getElementById(%q) && document.getElementById(%[1]q).dataset.rows === "%d" && document.getElementById(%[1]q).dataset.renderMs`, table, rows),
				fmt.Sprintf(`document.getElementById(%q).dataset.rows`, table))
			dataMs = append(dataMs, evalJS[float64](b, ctx, fmt.Sprintf(`Number(document.getElementById(%q).dataset.dataMs)`, table)))
			renderMs = append(renderMs, evalJS[float64](b, ctx, fmt.Sprintf(`Number(document.getElementById(%q).dataset.renderMs)`, table)))
		}
		return median(dataMs), median(renderMs)
	}
	b.ResetTimer()
	runsData, runsMs := measure("#/", "runs-table", runs+trials)
	sweepData, sweepMs := measure("#/sweep/fleet-sweep", "trials-table", trials)
	// Responsiveness: one click on a column header re-sorts and re-renders all 150 rows
	// synchronously; the time of that click handler.
	open(b, ctx, e.URL, "#/")
	waitJS(b, ctx, "the runs table", fmt.Sprintf(`document.getElementById("runs-table").dataset.rows === "%d"`, runs+trials), `document.getElementById("runs-table").dataset.rows`)
	var sortMs []float64
	for range b.N {
		sortMs = append(sortMs, evalJS[float64](b, ctx, `(() => { const t0 = performance.now(); document.querySelector('#runs-table th[data-key="loss"]').click(); return performance.now() - t0; })()`))
	}
	b.StopTimer()
	b.ReportMetric(runsData, "ms-runs-data")
	b.ReportMetric(runsMs, "ms-runs-page")
	b.ReportMetric(sweepData, "ms-sweep-data")
	b.ReportMetric(sweepMs, "ms-sweep-page")
	b.ReportMetric(median(sortMs), "ms-sort-150-rows")
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}
