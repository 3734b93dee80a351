// banditd dashboard: polls /v1/loop/status every second and /v1/models every five, and draws
// its charts on <canvas> by hand (no third-party code, nothing from another origin). Every chart
// comes from the status's history (the trainer's timeline) and spans the selected time.
"use strict";

const POLL_MS = 1000;
const MODELS_MS = 5000;
const KEY_STORE = "banditd-admin-key";
const SPAN_STORE = "banditd-span";
const DEFAULT_SPAN = 300;

const state = { key: null, span: DEFAULT_SPAN, modelsAt: 0, modelsLoading: false, models: null, modelsTime: null, status: null, polledAt: 0 };

// -- auth: ?key=… (removed from the address bar at once), or the form on a 401 ----------------

function initKey() {
  const params = new URLSearchParams(location.search);
  const fromQuery = params.get("key");
  if (fromQuery) {
    sessionStorage.setItem(KEY_STORE, fromQuery);
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  state.key = sessionStorage.getItem(KEY_STORE);
  const form = document.getElementById("key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("key-input").value.trim();
    if (!value) return;
    state.key = value;
    sessionStorage.setItem(KEY_STORE, value);
    form.hidden = true;
    poll();
  });
}

class HttpError extends Error {
  constructor(status, text) { super(`HTTP ${status}: ${text.slice(0, 200)}`); this.status = status; }
}

async function request(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["Ocp-Apim-Subscription-Key"] = state.key;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  if (!response.ok) throw new HttpError(response.status, await response.text());
  return response;
}

// -- formatting -------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
function fmt(v, digits = 3) { return isNum(v) ? v.toFixed(digits) : "–"; }
function signed(v, digits = 3) { return isNum(v) ? (v >= 0 ? "+" : "") + v.toFixed(digits) : "–"; }
function pct(v) { return isNum(v) ? (100 * v).toFixed(1) + "%" : "–"; }
function count(v) { return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–"; }
function clock(iso) { return iso ? new Date(iso).toLocaleTimeString("en-GB") : "–"; }
function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }
function badge(id, text, kind) { const el = $(id); el.textContent = text; el.className = "badge " + (kind || ""); }

// -- axes ---------------------------------------------------------------------------------------

// A "nice" step for a range split into about `count` parts: 1, 2, 2.5 or 5 times a power of ten.
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

// Ticks covering [lo, hi]: distinct, a nice step apart, as many decimals as the step needs, and
// never "-0". Returns {values, labels, lo, hi} where lo/hi are the outer ticks (the axis range).
function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { // one value: a small range around it (or 0 to 1 for nothing but zeros)
    const c = isNum(lo) ? lo : 0;
    if (c === 0) { lo = 0; hi = 1; } else { lo = c - Math.abs(c) * 0.1; hi = c + Math.abs(c) * 0.1; }
  }
  const step = niceStep((hi - lo) / (count - 1));
  const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
  const mantissa = step / Math.pow(10, Math.floor(Math.log10(step) + 1e-9));
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (Math.abs(mantissa - 2.5) < 1e-9 ? 1 : 0));
  const values = [], labels = [];
  for (let k = first; k <= last && values.length < 40; k++) {
    const v = k === 0 ? 0 : k * step;
    values.push(v);
    labels.push(tickLabel(v, digits));
  }
  return { values, labels, lo: first * step, hi: last * step };
}

function tickLabel(v, digits) {
  const x = v === 0 ? 0 : v; // turns -0 into 0 (both compare equal to 0)
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// The spans the selector offers, each with the step of its time ticks (seconds).
const SPANS = { 60: 15, 300: 60, 900: 300, 3600: 900 };
function timeLabel(seconds) {
  if (seconds === 0) return "now";
  if (seconds < 60) return `−${seconds} s`;
  return seconds % 3600 === 0 ? `−${seconds / 3600} h` : `−${seconds / 60} min`;
}

// -- charts ---------------------------------------------------------------------------------------

function color(name) { return getComputedStyle(document.documentElement).getPropertyValue("--" + name).trim(); }

function dataRange(values, floor, ceil) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (isNum(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (floor !== undefined) lo = Math.min(lo, floor);
  if (ceil !== undefined) hi = Math.max(hi, ceil);
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  return [lo, hi];
}

// The tick labels are DOM text in a layer over the canvas (so they can be read and selected).
function tickLayer(canvas) {
  let layer = canvas.parentElement.querySelector(".ticks");
  if (!layer) {
    layer = document.createElement("div");
    layer.className = "ticks";
    canvas.after(layer);
  }
  return layer;
}

function placeLabel(layer, cls, text, x, y) {
  const span = document.createElement("span");
  span.className = cls;
  span.textContent = text;
  span.style.left = x + "px";
  span.style.top = y + "px";
  layer.append(span);
}

// spec: {now, span, xs, series: [{ys, color, width, dash, lo, hi}], hlines: [{y, color}],
//        shade: [bool per x], yMin, yMax, clampLo, clampHi, empty}
// The x axis is always [now − span, now]: every chart shows the same stretch of time.
function drawChart(canvas, spec) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 52, right = 10, top = 8, bottom = 20;
  const now = spec.now, x0 = now - spec.span;
  const xs = spec.xs;
  const inSpan = xs.map((x) => x >= x0 && x <= now);
  const all = [];
  for (const s of spec.series) {
    for (let i = 0; i < xs.length; i++) {
      if (!inSpan[i]) continue;
      all.push(s.ys[i]);
      if (s.lo) all.push(s.lo[i], s.hi[i]);
    }
  }
  for (const l of spec.hlines || []) all.push(l.y);
  const kept = all.filter((v) => isNum(v) && (spec.clampLo === undefined || v >= spec.clampLo) && (spec.clampHi === undefined || v <= spec.clampHi));
  let [lo, hi] = dataRange(kept, spec.yMin, spec.yMax);
  if (spec.clampLo !== undefined) lo = Math.max(lo, spec.clampLo);
  if (spec.clampHi !== undefined) hi = Math.min(hi, spec.clampHi);
  const ticks = niceTicks(lo, hi);
  const y0 = ticks.lo, y1 = ticks.hi;
  const px = (x) => left + ((x - x0) / spec.span) * (w - left - right);
  const py = (y) => top + (1 - (Math.min(Math.max(y, y0), y1) - y0) / (y1 - y0)) * (h - top - bottom);
  const layer = tickLayer(canvas);
  layer.replaceChildren();
  ctx.strokeStyle = color("line"); ctx.lineWidth = 1;
  ticks.values.forEach((v, i) => {
    ctx.beginPath(); ctx.moveTo(left, py(v)); ctx.lineTo(w - right, py(v)); ctx.stroke();
    placeLabel(layer, "ytick", ticks.labels[i], left - 5, py(v));
  });
  const step = SPANS[spec.span] || spec.span / 4, n = Math.round(spec.span / step);
  for (let k = n; k >= 0; k--) {
    const back = k * step;
    const x = px(now - back);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, h - bottom); ctx.stroke();
    placeLabel(layer, "xtick" + (k === n ? " first" : k === 0 ? " last" : ""), timeLabel(back), x, h - bottom + 4);
  }
  canvas.dataset.x0 = String(x0);
  canvas.dataset.x1 = String(now);
  canvas.dataset.span = String(spec.span);
  ctx.save();
  ctx.beginPath(); ctx.rect(left, top, w - left - right, h - top - bottom); ctx.clip();
  if (spec.shade) {
    ctx.fillStyle = "rgba(255, 92, 92, 0.18)";
    for (let i = 0; i < xs.length; i++) {
      if (!spec.shade[i] || !inSpan[i]) continue;
      const a = px(i > 0 ? (xs[i - 1] + xs[i]) / 2 : xs[i]), b = px(i + 1 < xs.length ? (xs[i] + xs[i + 1]) / 2 : xs[i]);
      ctx.fillRect(a, top, Math.max(b - a, 2), h - top - bottom);
    }
  }
  for (const l of spec.hlines || []) {
    ctx.strokeStyle = l.color; ctx.setLineDash([5, 4]); ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(left, py(l.y)); ctx.lineTo(w - right, py(l.y)); ctx.stroke();
    ctx.setLineDash([]);
  }
  let points = 0;
  const visible = (ys) => ys.map((v, i) => (inSpan[i] ? v : null));
  for (const s of spec.series) {
    const ys = visible(s.ys);
    if (s.lo) {
      const los = visible(s.lo), his = visible(s.hi);
      ctx.fillStyle = s.color + "33";
      for (const run of runs(xs, los, his)) {
        ctx.beginPath();
        run.forEach((i, k) => (k ? ctx.lineTo(px(xs[i]), py(his[i])) : ctx.moveTo(px(xs[i]), py(his[i]))));
        for (let k = run.length - 1; k >= 0; k--) ctx.lineTo(px(xs[run[k]]), py(los[run[k]]));
        ctx.closePath(); ctx.fill();
      }
    }
    ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.6; ctx.setLineDash(s.dash || []);
    for (const run of runs(xs, ys, ys)) {
      ctx.beginPath();
      run.forEach((i, k) => (k ? ctx.lineTo(px(xs[i]), py(ys[i])) : ctx.moveTo(px(xs[i]), py(ys[i]))));
      if (run.length === 1) ctx.arc(px(xs[run[0]]), py(ys[run[0]]), 1.5, 0, 2 * Math.PI);
      ctx.stroke();
      points += run.length;
    }
    ctx.setLineDash([]);
  }
  ctx.restore();
  if (!points) {
    ctx.fillStyle = color("muted"); ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.font = "11px DejaVu Sans, sans-serif";
    ctx.fillText(spec.empty || "waiting for joined events…", (left + w) / 2, h / 2);
  }
  canvas.dataset.points = String(points);
  canvas.dataset.draws = String(Number(canvas.dataset.draws || 0) + 1);
}

function runs(xs, a, b) {
  const out = []; let cur = [];
  for (let i = 0; i < xs.length; i++) {
    if (isNum(a[i]) && isNum(b[i])) cur.push(i);
    else if (cur.length) { out.push(cur); cur = []; }
  }
  if (cur.length) out.push(cur);
  return out;
}

// -- rendering ----------------------------------------------------------------------------------

const epoch = (iso) => new Date(iso).getTime() / 1000;

// Mean rate of a cumulative column over about the last `seconds` of the history.
function recentRate(hs, column, seconds) {
  const n = hs.at.length;
  if (n < 2) return null;
  let i = n - 2;
  while (i > 0 && hs.at[n - 1] - hs.at[i] < seconds) i--;
  const dt = hs.at[n - 1] - hs.at[i];
  return dt > 0 ? Math.max(0, hs[column][n - 1] - hs[column][i]) / dt : null;
}

function renderNumbers(status) {
  const w = status.window, hs = status.history;
  const ranks = recentRate(hs, "decisions", 5), rewards = recentRate(hs, "rewards", 5);
  setText("ranks-total", count(status.counts.decisions));
  setText("ranks-rate", isNum(ranks) ? ranks.toFixed(1) + " /s" : "– /s");
  setText("rewards-total", count(status.counts.rewards));
  setText("rewards-rate", isNum(rewards) ? rewards.toFixed(1) + " /s" : "– /s");
  setText("reward-mean", fmt(w.rewardMean));
  setText("window-events", `over ${count(w.events)} joined events`);
  setText("improvement", signed(w.improvement.value));
  setText("improvement-ci", `[${signed(w.improvement.lower)}, ${signed(w.improvement.upper)}]`);
  setText("exploration", pct(w.explorationRatio));
  setText("exploration-cap", `cap ${pct(status.explorationCap)} · min p ${fmt(w.propensityMin)}`);
  setText("lag-events", count(status.learner.lagEvents));
  setText("lag-seconds", `${fmt(status.learner.lagSeconds, 1)} s behind`);
}

function mmss(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (x) => String(x).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

// When the next decision joins its reward (and can be learned): a decision joins once its
// rewardWaitTime (and a short grace) has passed, so a new loop's first join comes that long after
// its first rank.
function joinText(status) {
  const j = status.join;
  if (!j) return "";
  const now = epoch(status.time) + (Date.now() - state.polledAt) / 1000;
  const wait = `rewardWaitTime ${j.rewardWaitTime}`;
  const next = j.nextJoinAt ? epoch(j.nextJoinAt) - now : null;
  if (!j.joined) {
    if (next === null) return `no decisions yet: the first join comes ${j.rewardWaitTime} after the first rank (${wait})`;
    return next > 0 ? `first join in ${mmss(next)} (${wait})` : `first join due now (${wait}); the learner joins it in its next round`;
  }
  const queue = j.due
    ? `${count(j.due)} decisions due, waiting for the learner (oldest window closed ${mmss(now - epoch(j.oldestDueCloseAt))} ago)`
    : next === null ? "no decisions pending" : next > 0 ? `next join in ${mmss(next)}` : "next join due now";
  return `${count(j.joined)} joined; ${queue} (${wait})`;
}

function renderJoin() {
  if (!state.status) return;
  const text = joinText(state.status);
  setText("join", text);
  $("join").className = "join" + (state.status.join && !state.status.join.joined ? " first" : "");
}

const DRIFT_WHAT = "Page–Hinkley test on the joined rewards (mapped to [0, 1] by the reward range): " +
  "an alarm means the mean reward moved up or down by more than δ. A shift is explained when a newer " +
  "model decided most events since it and that model, replayed on the events before it, predicts the new level.";

function renderBadges(status) {
  const g = status.guardrail;
  badge("badge-serving", "serving: " + status.serving, status.serving === "policy" ? "ok" : "bad");
  badge("badge-guardrail", "guardrail: " + (g.enabled ? g.state : "off"), g.state === "tripped" ? "bad" : g.enabled ? "ok" : "");
  const a = status.drift.alarms[0];
  const recent = a && epoch(status.time) - epoch(a.at) < 120;
  const shift = a ? `reward mean ${a.direction} ${fmt(a.meanBefore, 2)} → ${fmt(a.meanAfter, 2)}` : "";
  const el = $("badge-drift");
  el.title = DRIFT_WHAT;
  if (!a) badge("badge-drift", "drift: reward mean steady", "ok");
  else if (isNum(a.explainedBy)) badge("badge-drift", `drift: ${shift}, explained by v${a.explainedBy}`, "ok");
  else if (recent) badge("badge-drift", `drift: ${shift}`, "warn");
  else badge("badge-drift", `drift: steady since ${clock(a.at)}`, "ok");
  badge("badge-model", "model v" + status.modelVersion, "plain");
  badge("badge-mode", status.learningMode, "plain");
  badge("badge-updated", "updated " + clock(status.time), "plain");
}

function renderPanels(status) {
  const g = status.guardrail;
  setText("g-state", g.enabled ? g.state : "disabled");
  setText("g-since", g.since ? clock(g.since) : "start");
  setText("g-rule", `trip when upper bound < −${g.margin}, recover when lower bound > 0; ≥ ${g.minEvents} events`);
  setText("g-counts", `${g.trips} / ${g.recoveries}`);
  setText("g-fallbacks", count(g.fallbackDecisions));
  setText("g-reason", g.reason ? "why: " + g.reason : "");
  const gl = $("g-history"); gl.replaceChildren();
  for (const t of g.history.slice(0, 12)) {
    const li = document.createElement("li"); li.className = t.state;
    li.textContent = `${clock(t.at)} → ${t.state}: ${t.reason}`; gl.append(li);
  }
  const d = status.drift;
  for (const side of ["up", "down"]) {
    const v = side === "up" ? d.statisticUp : d.statisticDown;
    $("drift-" + side).style.width = Math.min(100, 100 * v).toFixed(1) + "%";
    setText(`drift-${side}-v`, pct(v));
  }
  setText("drift-what", `Mean joined reward (in [0, 1]) ${fmt(d.mean, 3)} since the last alarm. ` +
    `Bars: each side's statistic as a share of the alarm threshold λ = ${d.threshold} (δ = ${d.delta}).`);
  const dl = $("drift-alarms"); dl.replaceChildren();
  for (const a of d.alarms.slice(0, 10)) {
    const li = document.createElement("li"); li.className = isNum(a.explainedBy) ? "explained" : a.direction;
    const why = isNum(a.explainedBy)
      ? `; explained by v${a.explainedBy} (replayed on the events before: ${fmt(a.counterfactual, 2)})`
      : isNum(a.counterfactual) ? `; not explained (newer model replayed on the events before: ${fmt(a.counterfactual, 2)})` : "";
    li.textContent = `${clock(a.at)} reward mean ${a.direction}: ${fmt(a.meanBefore)} → ${fmt(a.meanAfter)} (detected after ${a.detectedAfter} events)${why}`;
    dl.append(li);
  }
  if (!d.alarms.length) { const li = document.createElement("li"); li.textContent = "no alarms"; dl.append(li); }
  setText("method", `Window: ${status.window.size} events, α = ${status.window.alpha}. ${status.window.method}.`);
}

function renderCharts(status) {
  const hs = status.history;
  const xs = hs.at;
  const base = { now: epoch(status.time), span: state.span, xs };
  const empty = status.join && !status.join.joined ? joinText(status) : undefined;
  drawChart($("chart-reward"), { ...base, empty, series: [{ ys: hs.rewardMean, color: color("reward") }] });
  drawChart($("chart-value"), {
    ...base, empty,
    series: [
      { ys: hs.uniform, color: color("uniform"), dash: [3, 3], width: 1.2 },
      { ys: hs.baseline, lo: hs.baselineLower, hi: hs.baselineUpper, color: color("baseline") },
      { ys: hs.policy, lo: hs.policyLower, hi: hs.policyUpper, color: color("policy") },
    ],
    clampLo: -1.5, clampHi: 1.5,
  });
  drawChart($("chart-improvement"), {
    ...base, empty, shade: hs.tripped,
    series: [{ ys: hs.improvement, lo: hs.improvementLower, hi: hs.improvementUpper, color: color("policy") }],
    hlines: [{ y: 0, color: color("muted") }, { y: -status.guardrail.margin, color: color("bad") }],
    clampLo: -2, clampHi: 2,
  });
  drawChart($("chart-exploration"), {
    ...base, empty, yMin: 0, clampLo: 0,
    series: [{ ys: hs.explorationRatio, color: color("explore") }],
    hlines: [{ y: status.explorationCap, color: color("bad") }],
  });
  drawChart($("chart-traffic"), {
    ...base, yMin: 0, clampLo: 0, empty: "no traffic yet",
    // Every rank rewarded gives two equal lines: rewards are drawn dashed over the wider ranks line
    // so both stay visible.
    series: [{ ys: hs.ranksPerSecond, color: color("rank"), width: 3 }, { ys: hs.rewardsPerSecond, color: color("reward"), dash: [6, 4] }],
  });
  drawChart($("chart-lag"), {
    ...base, yMin: 0, clampLo: 0, empty: "no traffic yet",
    series: [{ ys: hs.lagEvents, color: color("lag") }, { ys: hs.lagSeconds, color: color("lagsec") }],
  });
}

// The table is drawn from the last /v1/models answer, but which row serves comes from the same
// status document as the header's "model vN", so the two cannot disagree within one refresh.
function renderModels() {
  const body = state.models, status = state.status;
  if (!body || !status) return;
  const serving = status.modelVersion;
  setText("models-at", "as of " + clock(state.modelsTime));
  const tbody = $("models").tBodies[0];
  tbody.replaceChildren();
  if (!body.models.some((m) => m.version === serving)) {
    // Published since the list was fetched: shown at once, its scores with the next list.
    const tr = document.createElement("tr");
    tr.className = "serving";
    for (const text of [`v${serving} ◀ serving`, clock(status.modelCreatedAt), "–", "–", "(with the next refresh)", ""]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    tbody.append(tr);
  }
  for (const m of body.models) {
    const isServing = m.version === serving;
    const tr = document.createElement("tr");
    if (isServing) tr.className = "serving";
    const gain = m.served && m.served.improvement;
    const served = !m.served ? "–"
      : isNum(gain.value) ? `${signed(gain.value)} [${signed(gain.lower)}, ${signed(gain.upper)}] · ${m.served.events} ev`
      : `– · ${m.served.events} ev`;
    const cf = m.counterfactual ? `${fmt(m.counterfactual.policy.value)} (${signed(m.counterfactual.improvement.value)})` : "–";
    const cells = [
      "v" + m.version + (isServing ? " ◀ serving" : "") + (m.restoredFrom ? ` (restored v${m.restoredFrom})` : ""),
      clock(m.createdAt), count(m.learnedCount), served, cf,
    ];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    const td = document.createElement("td");
    if (!isServing) {
      const button = document.createElement("button");
      button.textContent = "activate";
      button.title = `Roll back: serve v${m.version} and keep learning from it`;
      button.addEventListener("click", () => activate(m.version));
      td.append(button);
    }
    tr.append(td); tbody.append(tr);
  }
}

async function activate(version) {
  if (!confirm(`Serve model v${version} and continue learning from it?`)) return;
  try { await request(`/v1/models/${version}/activate`, { method: "POST" }); state.modelsAt = 0; }
  catch (error) { showError(error); }
}

function showError(error) {
  const el = $("error");
  if (error && error.status === 401) {
    $("key-form").hidden = false;
    $("key-error").textContent = state.key ? "that key was refused" : "";
    el.hidden = true;
    return;
  }
  el.textContent = "Cannot reach banditd: " + (error && error.message ? error.message : error);
  el.hidden = false;
}

// -- time span --------------------------------------------------------------------------------------

function initSpan() {
  const saved = Number(localStorage.getItem(SPAN_STORE));
  state.span = SPANS[saved] ? saved : DEFAULT_SPAN;
  for (const button of document.querySelectorAll("#span button")) {
    button.addEventListener("click", () => {
      state.span = Number(button.dataset.span);
      localStorage.setItem(SPAN_STORE, String(state.span));
      markSpan();
      if (state.status) renderCharts(state.status);
    });
  }
  markSpan();
}

function markSpan() {
  for (const button of document.querySelectorAll("#span button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.span) === state.span));
  }
  document.body.dataset.span = String(state.span);
}

// -- polling --------------------------------------------------------------------------------------

async function poll() {
  try {
    const status = await request("/v1/loop/status").then((r) => r.json());
    state.status = status;
    state.polledAt = Date.now();
    $("error").hidden = true;
    renderBadges(status);
    renderNumbers(status);
    renderPanels(status);
    renderCharts(status);
    renderJoin();
    const listed = state.models && state.models.models.some((m) => m.version === status.modelVersion);
    if (!state.modelsLoading && (Date.now() - state.modelsAt > MODELS_MS || (state.models && !listed))) {
      state.modelsAt = Date.now();
      state.modelsLoading = true;
      request("/v1/models").then((r) => r.json()).then((body) => {
        state.models = body;
        state.modelsTime = new Date().toISOString();
        renderModels();
      }).catch(showError).finally(() => { state.modelsLoading = false; });
    }
    renderModels();
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (error) {
    showError(error);
    if (error && error.status === 401) return; // wait for the key form
  }
  setTimeout(poll, POLL_MS);
}

window.addEventListener("resize", () => state.status && renderCharts(state.status));
document.addEventListener("DOMContentLoaded", () => {
  initKey();
  initSpan();
  setInterval(renderJoin, 1000); // the countdown ticks between polls
  poll();
});
