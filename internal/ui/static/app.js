// herd's dashboard: one page, four hash routes (see docs/dashboard.md for the API):
//
//	#/                  runs and sweeps, live from /api/events
//	#/run/NAME          one run: charts of its history, controls, checkpoints, config, MetaP
//	#/compare/A,B,...   runs' loss on the same axes
//	#/sweep/NAME        a sweep's trials, metric against each parameter, ASHA rungs, LR transfer
//
// Rules the code keeps:
//   - Everything is pushed: each view opens one EventSource and renders what it sends; no
//     view polls, none reloads the page. The runs table is one event, one render, however
//     many runs there are (no request per row).
//   - Names travel url-encoded in the hash and in query strings, never in a path, because
//     a sweep's trials are named SWEEP/trial-N.
//   - No inline script or style attribute that a CSP of default-src 'self' would refuse:
//     colours set through element.style from script are allowed; HTML handlers are not.
//   - Stable element ids (#run-state, #btn-pause, #chart-loss ...) and data attributes
//     (data-points on each chart, data-rows on tables) are what the browser test reads;
//     the runs and trials tables also note when their data came (data-data-ms) and when
//     they were first rendered (data-render-ms), in ms from navigation start, which the
//     load benchmark reports.
//
// uPlot (vendored, see internal/ui/static/vendor/uplot/VERSION) draws every chart but the
// expert-load heat map, which is a canvas of its own.

const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
const conn = document.getElementById("conn");

// cleanup holds what the current view must close when the route changes: event
// sources, charts, timers.
let cleanup = [];

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

function route() {
	for (const f of cleanup) f();
	cleanup = [];
	view.textContent = "";
	const h = location.hash.replace(/^#\/?/, "");
	const [page, ...rest] = h.split("/");
	const arg = rest.join("/");
	if (page === "run" && arg) return runPage(decodeURIComponent(arg));
	if (page === "sweep" && arg) return sweepPage(decodeURIComponent(arg));
	if (page === "compare" && arg) return comparePage(arg.split(",").filter(Boolean).map(decodeURIComponent));
	return runsPage();
}

// ---------------------------------------------------------------------------------------
// Helpers: HTML escaping, number formats, fetching, live streams.

function esc(s) {
	return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function isNum(v) {
	return typeof v === "number" && Number.isFinite(v);
}

// num formats a metric: 4 significant digits, SI suffixes for large values, "—" for none.
function num(v, digits = 4) {
	if (!isNum(v)) return "—";
	const a = Math.abs(v);
	if (a >= 1e4) return si(v);
	if (a !== 0 && (a < 1e-3)) return v.toExponential(2);
	return String(Number(v.toPrecision(digits)));
}

function si(v) {
	const a = Math.abs(v);
	for (const [d, s] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
		if (a >= d) return Number((v / d).toPrecision(3)) + s;
	}
	return String(Number(v.toPrecision(3)));
}

// lossOf and speedOf are a run's latest loss and tokens/s: its live heartbeat's, else
// those of its last segment; none before its first step.
function lossOf(r) {
	return r.live?.step > 0 ? r.live.loss : r.step > 0 ? r.loss : null;
}

function speedOf(r) {
	return r.live?.tokens_per_s || r.tokens_per_s || null;
}

function stateBadge(s, id) {
	return `<span class="state state-${esc(s)}"${id ? ` id="${id}" data-state="${esc(s)}"` : ""}>${esc(s || "—")}</span>`;
}

function runLink(name) {
	return `<a href="#/run/${encodeURIComponent(name)}">${esc(name)}</a>`;
}

function sweepLink(name) {
	return `<a href="#/sweep/${encodeURIComponent(name)}">${esc(name)}</a>`;
}

async function getJSON(url, opts) {
	const r = await fetch(url, opts);
	const body = await r.json().catch(() => ({}));
	if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
	return body;
}

// live opens an EventSource for this view and calls handlers[event] with each event's
// parsed data; the connection badge in the header shows whether it is open. The browser
// reconnects by itself after an error.
function live(url, handlers) {
	const es = new EventSource(url);
	es.onopen = () => setConn("live");
	es.onerror = () => setConn(es.readyState === EventSource.CLOSED ? "closed" : "down");
	for (const [ev, f] of Object.entries(handlers)) {
		es.addEventListener(ev, (e) => f(JSON.parse(e.data)));
	}
	cleanup.push(() => es.close());
	return es;
}

function setConn(s) {
	conn.textContent = s === "live" ? "live" : s === "down" ? "reconnecting" : s;
	conn.className = "conn " + (s === "live" ? "live" : "down");
}

function setCrumbs(html) {
	crumbs.innerHTML = html;
}

function showError(err) {
	const p = document.createElement("p");
	p.className = "error";
	p.id = "view-error";
	p.textContent = String(err.message || err);
	view.prepend(p);
}

function q(name) {
	return encodeURIComponent(name);
}

// ---------------------------------------------------------------------------------------
// Runs page.

// Columns of the runs table: key for sorting, header, cell HTML, sort value.
const runColumns = [
	{ key: "name", head: "run", cell: (r) => runLink(r.name), val: (r) => r.name, cls: "name" },
	{ key: "state", head: "state", cell: (r) => stateBadge(r.state), val: (r) => r.state },
	{ key: "step", head: "step / steps", cell: (r) => `${r.step ?? 0} / ${r.steps ?? "?"}`, val: (r) => r.step, num: true },
	{ key: "loss", head: "loss", cell: (r) => num(lossOf(r)), val: lossOf, num: true },
	{ key: "eval_loss", head: "eval loss", cell: (r) => num(r.eval_loss), val: (r) => r.eval_loss, num: true },
	{ key: "tokens_per_s", head: "tokens/s", cell: (r) => num(speedOf(r)), val: speedOf, num: true },
	{ key: "eta", head: "ETA", cell: (r) => esc(r.eta || "—"), val: (r) => r.eta || "", num: true },
	{ key: "worker", head: "worker / ranks", cell: (r) => esc((r.worker || "—") + (r.world ? ` ×${r.world}` : "")), val: (r) => r.worker || "" },
	{ key: "attempt", head: "attempts", cell: (r) => (r.attempt ? `${r.attempt}${r.max_attempts > 0 ? " / " + r.max_attempts : ""}` : "—"), val: (r) => r.attempt || 0, num: true },
	{ key: "sweep", head: "sweep", cell: (r) => (r.sweep ? sweepLink(r.sweep) : ""), val: (r) => r.sweep || "" },
	{ key: "updated", head: "updated", cell: (r) => esc(ago(r.updated)), val: (r) => r.updated || "" },
];

// The runs page keeps its filter, sort and selection across route changes and updates.
const runsUI = { filter: "", sort: "updated", desc: true, selected: new Set(), now: Date.now() };

function ago(t) {
	if (!t) return "—";
	const s = Math.max(0, (runsUI.now - Date.parse(t)) / 1000);
	if (s < 60) return `${Math.round(s)}s ago`;
	if (s < 3600) return `${Math.round(s / 60)}m ago`;
	if (s < 86400) return `${Math.round(s / 3600)}h ago`;
	return `${Math.round(s / 86400)}d ago`;
}

function runsPage() {
	setCrumbs("runs");
	view.innerHTML = `
<div class="card">
  <div class="toolbar">
    <input type="search" id="runs-filter" placeholder="filter: name, state, worker, sweep" value="${esc(runsUI.filter)}">
    <button id="btn-compare" class="primary" disabled>compare selected</button>
    <span id="runs-count" class="muted"></span>
  </div>
  <div><table id="runs-table"><thead><tr><th><input type="checkbox" id="select-all" title="select all shown"></th>${runColumns
		.map((c) => `<th class="sortable${c.num ? " num" : ""}" data-key="${c.key}">${c.head}</th>`)
		.join("")}</tr></thead><tbody></tbody></table></div>
</div>
<h2>sweeps</h2>
<div class="card"><table id="sweeps-table"><thead><tr><th>sweep</th><th>state</th><th>metric</th><th class="num">trials done / all</th><th>best trial</th><th class="num">best metric</th></tr></thead><tbody></tbody></table></div>`;
	const table = document.getElementById("runs-table");
	const tbody = table.tBodies[0];
	const filter = document.getElementById("runs-filter");
	const compare = document.getElementById("btn-compare");
	let data = null;

	const render = () => {
		if (!data) return;
		runsUI.now = data.now ? Date.parse(data.now) : Date.now();
		const f = runsUI.filter.toLowerCase();
		let rows = data.runs || [];
		if (f) rows = rows.filter((r) => [r.name, r.state, r.worker, r.sweep].some((v) => String(v || "").toLowerCase().includes(f)));
		const col = runColumns.find((c) => c.key === runsUI.sort) || runColumns[0];
		const sign = runsUI.desc ? -1 : 1;
		rows = rows.slice().sort((a, b) => sign * compareValues(col.val(a), col.val(b)));
		tbody.innerHTML = rows
			.map(
				(r) =>
					`<tr><td><input type="checkbox" data-name="${esc(r.name)}"${runsUI.selected.has(r.name) ? " checked" : ""}></td>${runColumns
						.map((c) => `<td class="${c.num ? "num" : ""} ${c.cls || ""}">${c.cell(r)}</td>`)
						.join("")}</tr>`,
			)
			.join("");
		for (const th of table.tHead.rows[0].cells) {
			th.classList.toggle("sorted", th.dataset.key === runsUI.sort);
			th.classList.toggle("desc", th.dataset.key === runsUI.sort && runsUI.desc);
		}
		document.getElementById("runs-count").textContent = `${rows.length} of ${(data.runs || []).length} runs`;
		table.dataset.rows = rows.length;
		renderSweeps(data.sweeps || []);
		const tu = document.getElementById("temporal-ui");
		tu.hidden = !data.temporal_ui;
		if (data.temporal_ui) tu.href = data.temporal_ui;
		if (!table.dataset.renderMs) table.dataset.renderMs = Math.round(performance.now());
	};

	const renderSweeps = (sweeps) => {
		const tb = document.getElementById("sweeps-table").tBodies[0];
		tb.innerHTML = sweeps.length
			? sweeps
					.map((s) => {
						const best = s.best >= 0 ? runLink(`${s.name}/trial-${s.best}`) : "—";
						return `<tr><td>${sweepLink(s.name)}</td><td>${stateBadge(s.state)}</td><td>${esc(s.metric)}</td><td class="num">${s.completed} / ${s.trials}</td><td>${best}</td><td class="num">${num(s.best_metric)}</td></tr>`;
					})
					.join("")
			: `<tr><td colspan="6" class="muted">no sweeps</td></tr>`;
	};

	const updateCompare = () => {
		compare.disabled = runsUI.selected.size < 1;
		compare.textContent = `compare selected (${runsUI.selected.size})`;
	};

	filter.addEventListener("input", () => {
		runsUI.filter = filter.value;
		render();
	});
	table.tHead.addEventListener("click", (e) => {
		const th = e.target.closest("th.sortable");
		if (!th) return;
		if (runsUI.sort === th.dataset.key) runsUI.desc = !runsUI.desc;
		else (runsUI.sort = th.dataset.key), (runsUI.desc = false);
		render();
	});
	tbody.addEventListener("change", (e) => {
		const name = e.target.dataset.name;
		if (!name) return;
		e.target.checked ? runsUI.selected.add(name) : runsUI.selected.delete(name);
		updateCompare();
	});
	document.getElementById("select-all").addEventListener("change", (e) => {
		for (const box of tbody.querySelectorAll("input[data-name]")) {
			box.checked = e.target.checked;
			e.target.checked ? runsUI.selected.add(box.dataset.name) : runsUI.selected.delete(box.dataset.name);
		}
		updateCompare();
	});
	compare.addEventListener("click", () => {
		location.hash = "#/compare/" + [...runsUI.selected].map(q).join(",");
	});
	updateCompare();
	live("/api/events", {
		runs: (d) => {
			if (!table.dataset.dataMs) table.dataset.dataMs = Math.round(performance.now());
			d.runs = d.runs || [];
			data = d;
			render();
		},
	});
}

// compareValues orders numbers numerically, everything else as text, missing values last.
function compareValues(a, b) {
	const an = a === null || a === undefined || a === "", bn = b === null || b === undefined || b === "";
	if (an || bn) return an === bn ? 0 : an ? 1 : -1;
	if (typeof a === "number" && typeof b === "number") return a - b;
	return String(a).localeCompare(String(b), undefined, { numeric: true });
}

// ---------------------------------------------------------------------------------------
// History: the columnar rows of /api/history, grown by the live stream.

const historyColumns = ["step", "tokens", "time", "loss", "aux_loss", "lr", "grad_norm", "tokens_per_s", "step_seconds", "eval_loss", "eval_bpb", "fp8_amax_max", "fp8_scale_min", "fp8_scale_max", "expert_load"];

function emptyHistory() {
	return Object.fromEntries(historyColumns.map((c) => [c, []]));
}

// mergeHistory adds the rows of body (an /api/history body or a history event) to h. On
// a reset (a resume cut the history back) the rows from body's first step on replace
// those held; otherwise only rows after the last step held are added, so that an event
// overlapping the first fetch adds nothing twice. It returns whether h changed.
function mergeHistory(h, body) {
	const steps = body.step || [];
	if (!steps.length) return false;
	let keepUpTo = h.step.length;
	if (body.reset) {
		keepUpTo = h.step.findIndex((s) => s >= steps[0]);
		if (keepUpTo < 0) keepUpTo = h.step.length;
	}
	for (const c of historyColumns) h[c].length = Math.min(h[c].length, keepUpTo);
	const last = h.step.length ? h.step[h.step.length - 1] : -Infinity;
	let changed = !!body.reset;
	for (let i = 0; i < steps.length; i++) {
		if (steps[i] <= last) continue;
		for (const c of historyColumns) h[c].push(body[c] ? (body[c][i] ?? null) : null);
		changed = true;
	}
	return changed;
}

// The x axis of every history chart: step, tokens or wall time.
const xModes = {
	step: { label: "step", of: (h) => h.step, time: false },
	tokens: { label: "tokens", of: (h) => h.tokens, time: false },
	time: { label: "wall time", of: (h) => h.time.map((t) => (t === null ? null : t / 1000)), time: true },
};

// Chart options shared by the run and compare pages, kept across route changes.
const chartUI = { x: "step", log: false, smooth: 0 };

function chartToolbar() {
	return `<div class="toolbar">
  <label>x <select id="x-axis">${Object.entries(xModes)
		.map(([k, m]) => `<option value="${k}"${chartUI.x === k ? " selected" : ""}>${m.label}</option>`)
		.join("")}</select></label>
  <label><input type="checkbox" id="log-scale"${chartUI.log ? " checked" : ""}> log y</label>
  <label>smoothing <input type="range" id="smoothing" min="0" max="0.99" step="0.01" value="${chartUI.smooth}"> <span id="smoothing-value">${chartUI.smooth}</span></label>
</div>`;
}

function bindChartToolbar(rebuild) {
	document.getElementById("x-axis").addEventListener("change", (e) => {
		chartUI.x = e.target.value;
		rebuild();
	});
	document.getElementById("log-scale").addEventListener("change", (e) => {
		chartUI.log = e.target.checked;
		rebuild();
	});
	const sm = document.getElementById("smoothing");
	sm.addEventListener("input", () => {
		chartUI.smooth = Number(sm.value);
		document.getElementById("smoothing-value").textContent = sm.value;
		rebuild();
	});
}

// ema smooths a series with an exponential moving average of weight a (0 = none),
// debiased as TensorBoard does so that the first points are not pulled towards zero;
// nulls stay nulls and do not enter the average.
function ema(ys, a) {
	if (!a) return ys;
	let m = 0, w = 0;
	return ys.map((y) => {
		if (!isNum(y)) return null;
		m = a * m + (1 - a) * y;
		w = a * w + (1 - a);
		return m / w;
	});
}

// positive drops values a log axis cannot show.
function positive(ys) {
	return chartUI.log ? ys.map((y) => (isNum(y) && y > 0 ? y : null)) : ys;
}

const palette = ["#2f6fde", "#e4572e", "#1f8a4c", "#8e44ad", "#f0a202", "#17a2b8", "#c2185b", "#6d4c41", "#455a64", "#7cb342"];

function lineSeries(label, color, extra) {
	return { label, stroke: color, width: 1.5, spanGaps: true, points: { show: false }, value: (u, v) => num(v), ...extra };
}

function pointSeries(label, color) {
	return { label, stroke: color, fill: color, width: 0, paths: () => null, points: { show: true, size: 7, stroke: color, fill: color }, value: (u, v) => num(v) };
}

// wholeIncrs are the tick spacings of a step or token axis: whole numbers only.
const wholeIncrs = [1, 2, 5].flatMap((m) => Array.from({ length: 13 }, (_, e) => m * 10 ** e)).sort((a, b) => a - b);

// tickLabels labels a y axis's ticks: SI suffixes for large values, else enough digits
// to tell neighbouring ticks apart (an LR schedule spans 0.00295 to 0.003), with float
// noise rounded off; log axes leave unlabelled ticks null.
function tickLabels(u, vs) {
	return vs.map((v) => (v === null ? "" : Math.abs(v) >= 1e4 ? si(v) : String(Number(v.toPrecision(6)))));
}

// axisWidth sizes a y axis to its longest tick label (uPlot passes the labels).
function axisWidth(u, labels) {
	return 16 + 7 * Math.max(4, ...(labels || []).map((l) => String(l ?? "").length));
}

// makeChart draws a uPlot chart into el (replacing what was there) and sets el's
// data-points to the number of x values, which the browser test watches grow.
function makeChart(el, title, series, data, opts = {}) {
	const mode = xModes[chartUI.x];
	const width = Math.max(300, el.clientWidth - 12);
	const o = {
		title,
		width,
		height: opts.height || 220,
		scales: { x: { time: opts.xTime ?? mode.time }, y: { distr: chartUI.log && !opts.linear ? 3 : 1 } },
		series: [{ label: opts.xLabel || mode.label, value: opts.xValue || ((u, v) => (v === null ? "—" : mode.time ? new Date(v * 1000).toLocaleTimeString() : si(v))) }, ...series],
		axes: [{ incrs: mode.time ? undefined : wholeIncrs, values: opts.xValues || (mode.time ? undefined : (u, vs) => vs.map((v) => (v === null ? "" : si(v)))) }, { values: tickLabels, size: axisWidth }],
		legend: { show: opts.legend ?? true },
		cursor: { drag: { x: true, y: false } },
	};
	el.textContent = "";
	const u = new uPlot(o, data, el);
	el.dataset.points = data[0].length;
	return u;
}

// ---------------------------------------------------------------------------------------
// Run page.

// The history charts of a run: id, title, and its series from the history.
const runCharts = [
	{
		id: "chart-loss",
		title: "loss",
		series: (h) => [
			[lineSeries("loss", palette[0]), positive(ema(h.loss, chartUI.smooth))],
			[pointSeries("eval loss", palette[1]), positive(h.eval_loss)],
		],
	},
	{ id: "chart-aux", title: "aux loss (MoE load balancing)", series: (h) => [[lineSeries("aux loss", palette[2]), positive(ema(h.aux_loss, chartUI.smooth))]] },
	{ id: "chart-lr", title: "learning rate", series: (h) => [[lineSeries("lr", palette[3]), positive(h.lr)]] },
	{ id: "chart-grad", title: "gradient norm (before clipping)", series: (h) => [[lineSeries("grad norm", palette[4]), positive(ema(h.grad_norm, chartUI.smooth))]] },
	{ id: "chart-tps", title: "tokens/s", series: (h) => [[lineSeries("tokens/s", palette[5]), positive(ema(h.tokens_per_s, chartUI.smooth))]] },
	{ id: "chart-step-time", title: "step time (s)", series: (h) => [[lineSeries("step s", palette[6]), positive(ema(h.step_seconds, chartUI.smooth))]] },
	{
		id: "chart-fp8",
		title: "FP8: largest amax, scale range",
		when: (h) => h.fp8_amax_max.some(isNum),
		series: (h) => [
			[lineSeries("amax max", palette[1]), positive(h.fp8_amax_max)],
			[lineSeries("scale min", palette[0]), positive(h.fp8_scale_min)],
			[lineSeries("scale max", palette[2]), positive(h.fp8_scale_max)],
		],
	},
];

function runPage(name) {
	setCrumbs(`<a href="#/">runs</a> / ${esc(name)}`);
	view.innerHTML = `
<div class="card">
  <div class="toolbar">
    <h1 id="run-name">${esc(name)}</h1> <span id="run-state-wrap">${stateBadge("…", "run-state")}</span>
    <span class="spacer"></span>
    <button id="btn-pause">pause</button><button id="btn-resume">resume</button><button id="btn-stop" class="danger">stop</button>
    <a id="run-compare" href="#/compare/${q(name)}">compare…</a>
  </div>
  <p id="control-error" class="error" hidden></p>
  <div class="kv" id="run-summary"></div>
</div>
${chartToolbar()}
<div class="charts">${runCharts.map((c) => `<div class="chart" id="${c.id}" data-points="0"><div class="empty">${c.title}: no history yet</div></div>`).join("")}</div>
<h2>expert load <span class="muted">(share of routed slots per expert, layers × experts against step; white = uniform)</span></h2>
<div class="card"><canvas id="heatmap" height="0"></canvas><div class="legend-bar"><span>under-used</span><canvas id="heatmap-legend" width="160" height="10"></canvas><span>over-used (2× uniform)</span><span id="heatmap-range"></span></div><p id="heatmap-empty" class="muted">no expert load (a dense model, or no history yet)</p></div>
<div class="cols">
  <div><h2>checkpoints</h2><div class="card scroll"><ul id="checkpoints"></ul></div>
       <h2>resume lineage</h2><div class="card"><ul id="lineage"></ul></div></div>
  <div><h2>config</h2><div class="card"><pre id="config"></pre></div></div>
</div>
<h2>MetaP table <span class="muted">(per-tensor init, LR, weight decay, eps, forward multiplier)</span></h2>
<div class="card scroll"><table id="metap-table"><thead><tr><th>tensor</th><th>class</th><th>shape</th><th class="num">init std</th><th class="num">lr</th><th class="num">weight decay</th><th class="num">eps</th><th class="num">mult</th></tr></thead><tbody></tbody></table></div>`;

	const h = emptyHistory();
	const charts = new Map(); // id -> uPlot
	let status = null;

	const rebuild = () => {
		for (const u of charts.values()) u.destroy();
		charts.clear();
		for (const c of runCharts) {
			const el = document.getElementById(c.id);
			if (!h.step.length || (c.when && !c.when(h))) {
				el.hidden = !!c.when; // a chart that applies only to some runs shows no placeholder
				el.dataset.points = h.step.length;
				continue;
			}
			el.hidden = false;
			const ss = c.series(h);
			charts.set(c.id, makeChart(el, c.title, ss.map((s) => s[0]), [xModes[chartUI.x].of(h), ...ss.map((s) => s[1])]));
		}
		drawHeatmap(h);
	};
	// update redraws with the rows held: setData where a chart exists, a rebuild where
	// one must appear (the first rows, the first FP8 values).
	const update = () => {
		for (const c of runCharts) {
			const u = charts.get(c.id);
			const want = h.step.length && (!c.when || c.when(h));
			if (!!u !== !!want) return rebuild();
			if (u) {
				u.setData([xModes[chartUI.x].of(h), ...c.series(h).map((s) => s[1])]);
				document.getElementById(c.id).dataset.points = h.step.length;
			}
		}
		drawHeatmap(h);
	};
	bindChartToolbar(rebuild);
	const onResize = () => rebuild();
	window.addEventListener("resize", onResize);
	cleanup.push(() => {
		window.removeEventListener("resize", onResize);
		for (const u of charts.values()) u.destroy();
	});

	// shownStep is the newest step known: the live heartbeat's, the last committed one,
	// or the history's last row, whichever is ahead (each arrives on its own schedule).
	const shownStep = () => Math.max(status?.live?.step ?? 0, status?.step ?? 0, h.step.length ? h.step[h.step.length - 1] : 0);
	const showStatus = (s) => {
		status = s;
		const st = document.getElementById("run-state");
		st.textContent = s.state;
		st.dataset.state = s.state;
		st.dataset.step = s.step; // the last committed step
		st.className = `state state-${s.state}`;
		const running = s.state === "running", paused = s.state === "paused";
		document.getElementById("btn-pause").disabled = !running;
		document.getElementById("btn-resume").disabled = running || s.state === "completed";
		document.getElementById("btn-stop").disabled = !(running || paused);
		const kv = [
			["step", `<span id="run-step">${shownStep()}</span> / ${esc(s.steps)}`, true],
			["committed step", s.step],
			["loss", num(lossOf(s))],
			["eval loss", num(s.eval_loss)],
			["tokens/s", num(speedOf(s))],
			["ETA", s.eta || "—"],
			["worker", (s.worker || "—") + (s.world ? ` (${s.world} ranks)` : "")],
			["attempt", s.attempt ? `${s.attempt}${s.max_attempts > 0 ? " / " + s.max_attempts : ""}` : "—"],
			["segment", s.segment || "—"],
			["workflow", s.workflow || "—"],
			["checkpoint", s.checkpoint || "—"],
			["sweep", s.sweep ? sweepLink(s.sweep) : "—", true],
			["started", s.started ? new Date(s.started).toLocaleString() : "—"],
			["updated", s.updated ? new Date(s.updated).toLocaleString() : "—"],
			["folder", s.dir || "—", false, true],
		];
		if (s.last_failure) kv.push(["last failure", s.last_failure, false, true]);
		if (s.error) kv.push(["error", s.error, false, true]);
		for (const w of s.warnings || []) kv.push(["warning", w, false, true]);
		document.getElementById("run-summary").innerHTML = kv.map(([k, v, html, wide]) => `<div${wide ? ' class="wide"' : ""}><span>${esc(k)}</span><b>${html ? v : esc(v)}</b></div>`).join("");
		if (s.checkpoints) showList("checkpoints", s.checkpoints, "none committed");
		if (s.lineage) showLineage(s.lineage);
	};

	const control = async (action) => {
		if (action === "stop" && !confirm(`Stop ${name}? It commits the step it is on and ends.`)) return;
		const err = document.getElementById("control-error");
		err.hidden = true;
		try {
			const r = await getJSON(`/api/control?name=${q(name)}&action=${action}`, { method: "POST" });
			if (r.status) showStatus({ ...status, ...r.status });
		} catch (e) {
			err.textContent = `${action}: ${e.message}`;
			err.hidden = false;
		}
	};
	for (const a of ["pause", "resume", "stop"]) document.getElementById(`btn-${a}`).addEventListener("click", () => control(a));

	getJSON(`/api/run?name=${q(name)}`)
		.then((d) => {
			showStatus(d.status);
			showList("checkpoints", d.checkpoints || [], "none committed");
			showLineage(d.lineage || d.status.lineage || []);
			document.getElementById("config").textContent = d.config_yaml || "";
			document.getElementById("metap-table").tBodies[0].innerHTML = (d.metap || [])
				.map((m) => `<tr><td>${esc(m.name)}</td><td>${esc(m.class)}</td><td>${esc((m.shape || []).join(" × "))}</td><td class="num">${num(m.init_std)}</td><td class="num">${num(m.lr)}</td><td class="num">${num(m.weight_decay)}</td><td class="num">${num(m.eps)}</td><td class="num">${num(m.mult)}</td></tr>`)
				.join("");
		})
		.catch(showError);
	getJSON(`/api/history?name=${q(name)}`)
		.then((body) => {
			mergeHistory(h, body);
			rebuild();
			live(`/api/events?name=${q(name)}`, {
				status: showStatus,
				history: (b) => {
					if (!mergeHistory(h, b)) return;
					update();
					const st = document.getElementById("run-step");
					if (st) st.textContent = shownStep();
				},
			});
		})
		.catch(showError);
}

function showList(id, items, none) {
	document.getElementById(id).innerHTML = items.length ? items.map((i) => `<li>${esc(i)}</li>`).join("") : `<li class="muted">${esc(none)}</li>`;
}

function showLineage(changes) {
	showList("lineage", changes.map((c) => `at step ${c.step}: ${c.key} ${c.was} → ${c.now}`), "no resume changed the config");
}

// drawHeatmap paints the expert load: one band per MoE layer, one row per expert, one
// column per pixel (each the nearest step), coloured by the expert's share times the
// number of experts: 1 (uniform routing) is white, below it blue, above it red, 2× and
// more full red.
function drawHeatmap(h) {
	const cv = document.getElementById("heatmap");
	if (!cv) return;
	const first = h.expert_load.findIndex((l) => Array.isArray(l) && l.length);
	document.getElementById("heatmap-empty").hidden = first >= 0;
	drawLegend();
	if (first < 0) {
		cv.height = 0;
		return;
	}
	const layers = h.expert_load[first].length;
	const experts = h.expert_load[first][0].length;
	const gutter = 70;
	const rowH = Math.max(3, Math.min(14, Math.floor(160 / (layers * experts))));
	const gap = 4;
	const W = Math.max(200, cv.clientWidth || 800);
	const plotW = W - gutter;
	cv.width = W;
	cv.height = layers * (experts * rowH + gap);
	const ctx = cv.getContext("2d");
	ctx.clearRect(0, 0, cv.width, cv.height);
	const img = ctx.createImageData(plotW, cv.height);
	const n = h.step.length;
	for (let x = 0; x < plotW; x++) {
		const load = h.expert_load[Math.min(n - 1, Math.floor((x * n) / plotW))];
		if (!Array.isArray(load)) continue;
		for (let l = 0; l < layers; l++) {
			for (let e = 0; e < experts; e++) {
				const [r, g, b] = loadColour((load[l]?.[e] ?? 0) * experts);
				const y0 = l * (experts * rowH + gap) + e * rowH;
				for (let y = y0; y < y0 + rowH; y++) {
					const i = (y * plotW + x) * 4;
					img.data[i] = r;
					img.data[i + 1] = g;
					img.data[i + 2] = b;
					img.data[i + 3] = 255;
				}
			}
		}
	}
	ctx.putImageData(img, gutter, 0);
	ctx.fillStyle = "#687082";
	ctx.font = "11px system-ui, sans-serif";
	ctx.textBaseline = "middle";
	for (let l = 0; l < layers; l++) ctx.fillText(`MoE layer ${l}`, 2, l * (experts * rowH + gap) + (experts * rowH) / 2);
	document.getElementById("heatmap-range").textContent = `steps ${h.step[0]}–${h.step[n - 1]}, ${layers} layers × ${experts} experts`;
	cv.dataset.points = n;
}

function loadColour(ratio) {
	const t = Math.max(-1, Math.min(1, ratio - 1)); // -1 unused .. 0 uniform .. 1 twice uniform
	if (t < 0) return [Math.round(255 * (1 + t)) + 0, Math.round(255 * (1 + 0.55 * t)), 255];
	return [255, Math.round(255 * (1 - 0.8 * t)), Math.round(255 * (1 - 0.85 * t))];
}

function drawLegend() {
	const cv = document.getElementById("heatmap-legend");
	if (!cv || cv.dataset.drawn) return;
	const ctx = cv.getContext("2d");
	for (let x = 0; x < cv.width; x++) {
		const [r, g, b] = loadColour((2 * x) / (cv.width - 1));
		ctx.fillStyle = `rgb(${r},${g},${b})`;
		ctx.fillRect(x, 0, 1, cv.height);
	}
	cv.dataset.drawn = "1";
}

// ---------------------------------------------------------------------------------------
// Compare page: each run's loss (line) and eval loss (points) in its own colour, on one
// pair of axes; live from one stream per run.

function comparePage(names) {
	setCrumbs(`<a href="#/">runs</a> / compare`);
	view.innerHTML = `
<div class="card"><h1>compare ${names.length} runs</h1>
  <table id="compare-table"><thead><tr><th>run</th><th>state</th><th class="num">step / steps</th><th class="num">loss</th><th class="num">eval loss</th><th class="num">tokens/s</th></tr></thead><tbody></tbody></table>
</div>
${chartToolbar()}
<div class="chart" id="chart-compare" data-points="0" data-series="${names.length}"></div>`;
	const hs = names.map(() => emptyHistory());
	const statuses = names.map((n) => ({ name: n }));
	let u = null;
	const el = document.getElementById("chart-compare");

	const renderTable = () => {
		document.getElementById("compare-table").tBodies[0].innerHTML = statuses
			.map(
				(s, i) =>
					`<tr><td><span class="swatch" data-i="${i}"></span>${runLink(s.name)}</td><td>${stateBadge(s.state)}</td><td class="num">${s.step ?? "—"} / ${s.steps ?? "?"}</td><td class="num">${num(lossOf(s))}</td><td class="num">${num(s.eval_loss)}</td><td class="num">${num(speedOf(s))}</td></tr>`,
			)
			.join("");
		for (const sw of document.querySelectorAll(".swatch")) sw.style.background = palette[sw.dataset.i % palette.length];
	};
	// rebuild joins the runs' x values into one sorted axis (uPlot.join), each run's
	// series null where it has no row, drawn with its gaps spanned.
	const rebuild = () => {
		if (u) u.destroy();
		u = null;
		const mode = xModes[chartUI.x];
		const tables = [];
		const series = [];
		hs.forEach((h, i) => {
			const xs = mode.of(h);
			const idx = xs.map((_, j) => j).filter((j) => xs[j] !== null);
			const col = palette[i % palette.length];
			const loss = positive(ema(h.loss, chartUI.smooth));
			const ev = positive(h.eval_loss);
			tables.push([idx.map((j) => xs[j]), idx.map((j) => loss[j]), idx.map((j) => ev[j])]);
			series.push(lineSeries(`${names[i]} loss`, col), pointSeries(`${names[i]} eval`, col));
		});
		const total = hs.reduce((a, h) => a + h.step.length, 0);
		if (!total) {
			el.innerHTML = `<div class="empty">no history yet</div>`;
			el.dataset.points = 0;
			return;
		}
		const data = uPlot.join(tables);
		u = makeChart(el, "loss", series, data, { height: 420 });
		el.dataset.points = total;
		el.dataset.runPoints = hs.map((h) => h.step.length).join(","); // rows per run, in order
	};
	bindChartToolbar(rebuild);
	cleanup.push(() => u && u.destroy());
	let pending = null;
	const schedule = () => {
		if (!pending) pending = setTimeout(() => ((pending = null), rebuild()), 250);
	};
	cleanup.push(() => clearTimeout(pending));
	renderTable();
	Promise.all(names.map((n) => getJSON(`/api/history?name=${q(n)}`)))
		.then((bodies) => {
			bodies.forEach((b, i) => mergeHistory(hs[i], b));
			rebuild();
			names.forEach((n, i) =>
				live(`/api/events?name=${q(n)}`, {
					status: (s) => {
						statuses[i] = s;
						renderTable();
					},
					history: (b) => mergeHistory(hs[i], b) && schedule(),
				}),
			);
		})
		.catch(showError);
}

// ---------------------------------------------------------------------------------------
// Sweep page.

function sweepPage(name) {
	setCrumbs(`<a href="#/">runs</a> / sweep ${esc(name)}`);
	view.innerHTML = `
<div class="card"><div class="toolbar"><h1>${esc(name)}</h1> <span id="sweep-state"></span></div><div class="kv" id="sweep-summary"></div></div>
<h2>trials</h2>
<div class="card"><table id="trials-table"><thead></thead><tbody></tbody></table></div>
<h2>metric against each parameter <span class="muted">(filled: completed; hollow: stopped at a rung, its last rung metric)</span></h2>
<div class="charts" id="param-charts"></div>
<div class="cols">
  <div><h2>ASHA rungs <span class="muted">(metric at each rung, then the final one; grey: stopped where its line ends)</span></h2><div class="chart" id="chart-rungs"></div><div class="card" id="rung-summary"></div></div>
  <div><h2>LR transfer <span class="muted">(metric against log2 lr, one curve per value of the other parameters)</span></h2><div class="chart" id="chart-transfer"></div></div>
</div>`;
	let charts = [];
	let sweep = null;
	const render = () => {
		for (const c of charts) c.destroy();
		charts = [];
		renderSweep(sweep, charts);
	};
	cleanup.push(() => charts.forEach((c) => c.destroy()));
	// A sweep event redraws everything; at most four times a second, so that a busy
	// 100-trial sweep does not keep the page drawing.
	let pending = null, last = 0;
	const schedule = () => {
		if (pending) return;
		pending = setTimeout(() => ((pending = null), (last = performance.now()), render()), Math.max(0, 250 - (performance.now() - last)));
	};
	cleanup.push(() => clearTimeout(pending));
	const onResize = () => sweep && render();
	window.addEventListener("resize", onResize);
	cleanup.push(() => window.removeEventListener("resize", onResize));
	getJSON(`/api/sweep?name=${q(name)}`)
		.then((d) => {
			const table = document.getElementById("trials-table");
			table.dataset.dataMs = Math.round(performance.now());
			sweep = d;
			render();
			table.dataset.renderMs = Math.round(performance.now());
			live(`/api/events?sweep=${q(name)}`, {
				sweep: (d) => {
					sweep = d;
					schedule();
				},
			});
		})
		.catch(showError);
}

// trialMetric is what a trial scored: its final metric once completed, else its last
// rung metric; null when it has neither.
function trialMetric(t) {
	if (t.state === "completed" && isNum(t.final)) return t.final;
	const r = t.rung_metric || [];
	return r.length ? r[r.length - 1] : null;
}

function paramValue(p) {
	const i = p.indexOf("=");
	return i < 0 ? [p, ""] : [p.slice(0, i), p.slice(i + 1)];
}

function lrLike(key) {
	return /(^|[._])(lr|learning_rate|eps|weight_decay)$/.test(key);
}

function renderSweep(s, charts) {
	const trials = s.trials || [];
	const params = s.params || {};
	const keys = Object.keys(params);
	const rungs = s.rungs || [];
	const st = document.getElementById("sweep-state");
	st.innerHTML = stateBadge(s.state, "sweep-state-badge");
	const best = s.best >= 0 ? trials.find((t) => t.index === s.best) : null;
	const kv = [
		["metric", `${s.metric} (${s.minimize === false ? "maximize" : "minimize"})`],
		["trials", `${trials.filter((t) => t.state === "completed").length} completed / ${trials.length}`],
		["rungs (steps)", rungs.length ? rungs.join(", ") : "none (no ASHA)"],
		["best trial", best ? runLink(best.id) : "—", true],
		["best metric", best ? num(trialMetric(best)) : "—"],
		["compute (steps)", s.compute ?? "—"],
	];
	if (s.target) kv.push(["target run", runLink(s.target.name), true], ["target state", s.target.state]);
	if (s.error) kv.push(["error", s.error]);
	document.getElementById("sweep-summary").innerHTML = kv.map(([k, v, html]) => `<div><span>${esc(k)}</span><b>${html ? v : esc(v)}</b></div>`).join("");

	// Trials table.
	const table = document.getElementById("trials-table");
	table.tHead.innerHTML = `<tr><th class="num">#</th><th>trial</th>${keys.map((k) => `<th class="num">${esc(k)}</th>`).join("")}<th>state</th><th class="num">step / steps</th>${rungs.map((r) => `<th class="num">rung ${r}</th>`).join("")}<th class="num">final</th><th>worker</th></tr>`;
	table.tBodies[0].innerHTML = trials
		.map((t) => {
			const vals = keys.map((k) => params[k][t.index]);
			const rm = t.rung_metric || [];
			return `<tr class="${t.index === s.best ? "best" : ""}" data-index="${t.index}"><td class="num">${t.index}</td><td>${runLink(t.id)}</td>${vals.map((v) => `<td class="num">${esc(isNum(v) ? num(v) : v)}</td>`).join("")}<td>${stateBadge(t.state)}${t.error ? ` <span class="error">${esc(t.error)}</span>` : ""}</td><td class="num">${t.step} / ${t.steps}</td>${rungs.map((_, i) => `<td class="num">${num(rm[i])}</td>`).join("")}<td class="num">${t.state === "completed" ? num(t.final) : "—"}</td><td>${esc(t.worker || "")}</td></tr>`;
		})
		.join("");
	table.dataset.rows = trials.length;

	// Metric against each parameter.
	const pc = document.getElementById("param-charts");
	pc.innerHTML = keys.map((k, i) => `<div class="chart" id="chart-param-${i}"></div>`).join("") || `<p class="muted">no parameters</p>`;
	keys.forEach((k, i) => {
		const el = document.getElementById(`chart-param-${i}`);
		const vals = trials.map((t) => params[k][t.index]);
		const numeric = vals.every(isNum);
		const cats = numeric ? null : [...new Set(vals.map(String))].sort();
		const log = numeric && (lrLike(k) || (Math.min(...vals) > 0 && Math.max(...vals) / Math.min(...vals) >= 100));
		const pts = trials
			.map((t, j) => ({ x: numeric ? vals[j] : cats.indexOf(String(vals[j])), y: trialMetric(t), done: t.state === "completed", best: t.index === s.best }))
			.filter((p) => isNum(p.y) && (!log || p.x > 0))
			.sort((a, b) => a.x - b.x);
		const data = [pts.map((p) => p.x), pts.map((p) => (p.done && !p.best ? p.y : null)), pts.map((p) => (!p.done ? p.y : null)), pts.map((p) => (p.best ? p.y : null))];
		const hollow = pointSeries("stopped", palette[8]);
		hollow.points.fill = "#fff";
		// Padding the x range keeps the first and last x inside it: uPlot draws the points
		// from the index of the range's ends, so with repeated x values at an end (trials
		// sharing a parameter value) an unpadded range would draw only one of them.
		const range = cats ? [-0.5, cats.length - 0.5] : log ? (u, lo, hi) => [lo / 1.5, hi * 1.5] : (u, lo, hi) => [lo - (hi - lo || 1) * 0.05, hi + (hi - lo || 1) * 0.05];
		charts.push(
			new uPlot(
				{
					title: `${s.metric} against ${k}`,
					width: Math.max(300, el.clientWidth - 12),
					height: 220,
					scales: { x: { time: false, distr: log ? 3 : 1, range }, y: { distr: 1 } },
					series: [{ label: k, value: (u, v) => (v === null ? "—" : cats ? cats[v] : num(v)) }, pointSeries("completed", palette[0]), hollow, pointSeries("best", palette[1])],
					axes: [{ values: (u, vs) => vs.map((v) => (v === null ? "" : cats ? (Number.isInteger(v) ? cats[v] ?? "" : "") : num(v, 3))), splits: cats ? () => cats.map((_, i) => i) : undefined }, { size: axisWidth, values: tickLabels }],
				},
				data,
				el,
			),
		);
		el.dataset.points = pts.length;
	});

	charts.push(...renderRungs(s, trials, rungs));
	const tc = renderTransfer(s, trials, params, keys);
	if (tc) charts.push(tc);
}

// renderRungs draws one line per trial through its metric at each rung it reached:
// stopped trials grey (their line ends at the rung that stopped them), the rest blue, the
// best red; and a count per rung of trials reached and stopped there.
function renderRungs(s, trials, rungs) {
	const el = document.getElementById("chart-rungs");
	const sum = document.getElementById("rung-summary");
	if (!rungs.length) {
		el.innerHTML = `<div class="empty">this sweep has no ASHA rungs</div>`;
		sum.hidden = true;
		return [];
	}
	sum.hidden = false;
	// The last column is the final metric, at the trials' last step, so that a line runs
	// from each rung to where the trial ended.
	const steps = Math.max(...trials.map((t) => t.steps || 0));
	const xs = steps > rungs[rungs.length - 1] ? [...rungs, steps] : rungs.slice();
	const series = [];
	const data = [xs];
	for (const t of trials) {
		const rm = t.rung_metric || [];
		if (!rm.length) continue;
		const col = t.index === s.best ? palette[1] : t.state === "stopped" ? "#b8bec9" : palette[0];
		series.push({ label: t.id, stroke: col, width: t.index === s.best ? 2.5 : 1, spanGaps: false, points: { show: true, size: 5, stroke: col, fill: col }, value: (u, v) => num(v) });
		const ys = rungs.map((_, i) => (isNum(rm[i]) ? rm[i] : null));
		if (xs.length > rungs.length) ys.push(t.state === "completed" && isNum(t.final) ? t.final : null);
		data.push(ys);
	}
	sum.innerHTML =
		`<table id="rungs-table"><thead><tr><th class="num">rung (step)</th><th class="num">reached</th><th class="num">stopped there</th></tr></thead><tbody>` +
		rungs
			.map((r, i) => {
				const reached = trials.filter((t) => (t.rung_metric || []).length > i).length;
				const stopped = trials.filter((t) => t.state === "stopped" && (t.rung_metric || []).length === i + 1).length;
				return `<tr><td class="num">${r}</td><td class="num">${reached}</td><td class="num">${stopped}</td></tr>`;
			})
			.join("") +
		`</tbody></table>`;
	el.dataset.points = series.length;
	if (!series.length) {
		el.innerHTML = `<div class="empty">no trial has reached a rung yet</div>`;
		return [];
	}
	return [
		new uPlot(
			{
				title: `${s.metric} at each rung`,
				width: Math.max(300, el.clientWidth - 12),
				height: 260,
				legend: { show: false },
				scales: { x: { time: false, range: (u, lo, hi) => [lo - (hi - lo || 1) * 0.05, hi + (hi - lo || 1) * 0.05] } },
				series: [{ label: "rung step" }, ...series],
				axes: [{ splits: () => xs, values: (u, vs) => vs.map((v) => (v === null ? "" : v === steps && xs.length > rungs.length ? `final (${si(v)})` : `rung ${si(v)}`)) }, { size: axisWidth, values: tickLabels }],
			},
			data,
			el,
		),
	];
}

// renderTransfer draws the LR-transfer plot: the metric against log2 of the lr parameter,
// one curve per combination of the other parameters that take few values (a width, a
// metap.mode), so that curves whose minima line up show that the best LR transfers.
function renderTransfer(s, trials, params, keys) {
	const el = document.getElementById("chart-transfer");
	const lr = keys.find((k) => /(^|[._])(lr|learning_rate)$/.test(k));
	if (!lr) {
		el.innerHTML = `<div class="empty">no lr parameter in this sweep</div>`;
		return null;
	}
	const others = keys.filter((k) => k !== lr && new Set(params[k].map(String)).size <= 8);
	const groups = new Map();
	for (const t of trials) {
		const v = params[lr][t.index], m = trialMetric(t);
		if (!isNum(v) || v <= 0 || !isNum(m)) continue;
		const g = others.map((k) => `${k}=${params[k][t.index]}`).join(", ") || "all trials";
		if (!groups.has(g)) groups.set(g, []);
		groups.get(g).push([Math.log2(v), m]);
	}
	if (!groups.size) {
		el.innerHTML = `<div class="empty">no trial has a metric yet</div>`;
		return null;
	}
	const tables = [];
	const series = [];
	[...groups.keys()].sort().forEach((g, i) => {
		const pts = groups.get(g).sort((a, b) => a[0] - b[0]);
		// One point per lr: the best of the trials at it (several seeds or other params).
		const byX = new Map();
		for (const [x, m] of pts) byX.set(x, byX.has(x) ? (s.minimize === false ? Math.max(byX.get(x), m) : Math.min(byX.get(x), m)) : m);
		tables.push([[...byX.keys()], [...byX.values()]]);
		const col = palette[i % palette.length];
		series.push({ label: g, stroke: col, width: 1.5, spanGaps: true, points: { show: true, size: 6, stroke: col, fill: col }, value: (u, v) => num(v) });
	});
	const data = uPlot.join(tables);
	el.dataset.points = data[0].length;
	el.dataset.series = series.length;
	return new uPlot(
		{
			title: `${s.metric} against log2(${lr})`,
			width: Math.max(300, el.clientWidth - 12),
			height: 260,
			scales: { x: { time: false } },
			series: [{ label: `log2 ${lr}`, value: (u, v) => (v === null ? "—" : `${num(v, 3)} (lr ${num(2 ** v, 3)})`) }, ...series],
			axes: [{ values: (u, vs) => vs.map((v) => num(v, 3)) }, { size: axisWidth, values: tickLabels }],
		},
		data,
		el,
	);
}
