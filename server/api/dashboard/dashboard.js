// banditd dashboard: polls /v1/loop/status and /metrics every second, /v1/models every five,
// and draws its charts on <canvas> by hand (no third-party code, nothing from another origin).
"use strict";

const POLL_MS = 1000;
const MODELS_MS = 5000;
const KEEP = 300; // client-side points kept for the traffic and lag charts
const KEY_STORE = "banditd-admin-key";

const state = { key: null, traffic: [], lag: [], last: null, modelsAt: 0, status: null };

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

// -- Prometheus text ----------------------------------------------------------------------------

function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const cut = line.lastIndexOf(" ");
    const key = line.slice(0, cut);
    const name = key.split("{")[0];
    const value = Number(line.slice(cut + 1));
    out.set(key, value);
    if (key !== name) out.set(name + "{*}", (out.get(name + "{*}") || 0) + value);
  }
  return out;
}
const sample = (m, name) => (m.has(name) ? m.get(name) : m.has(name + "{*}") ? m.get(name + "{*}") : null);

// -- charts ---------------------------------------------------------------------------------------

function color(name) { return getComputedStyle(document.documentElement).getPropertyValue("--" + name).trim(); }

function extent(values, floor, ceil) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (isNum(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (floor !== undefined) lo = Math.min(lo, floor);
  if (ceil !== undefined) hi = Math.max(hi, ceil);
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

// spec: {xs, series: [{ys, color, width, dash, lo, hi}], hlines: [{y, color}], shade: [bool per x],
//        yMin, yMax, clampLo, clampHi, digits}
function drawChart(canvas, spec) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 48, right = 8, top = 6, bottom = 20;
  const xs = spec.xs;
  const all = [];
  for (const s of spec.series) { all.push(...s.ys); if (s.lo) all.push(...s.lo, ...s.hi); }
  for (const l of spec.hlines || []) all.push(l.y);
  let [y0, y1] = extent(all.filter((v) => isNum(v) && (spec.clampLo === undefined || v >= spec.clampLo) && (spec.clampHi === undefined || v <= spec.clampHi)), spec.yMin, spec.yMax);
  if (spec.clampLo !== undefined) y0 = Math.max(y0, spec.clampLo);
  if (spec.clampHi !== undefined) y1 = Math.min(y1, spec.clampHi);
  const now = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
  const x0 = xs.length ? Math.min(xs[0], now - 10) : now - 60;
  const px = (x) => left + ((x - x0) / Math.max(now - x0, 1e-9)) * (w - left - right);
  const py = (y) => top + (1 - (Math.min(Math.max(y, y0), y1) - y0) / (y1 - y0)) * (h - top - bottom);
  ctx.font = "10px DejaVu Sans, sans-serif";
  ctx.strokeStyle = color("line"); ctx.fillStyle = color("muted"); ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, py(y)); ctx.lineTo(w - right, py(y)); ctx.stroke();
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ctx.fillText(y.toFixed(spec.digits ?? 2), left - 5, py(y));
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((now - x0) * i) / 4;
    ctx.fillText(i === 4 ? "now" : "−" + Math.round(now - x) + "s", Math.min(Math.max(px(x), left + 12), w - right - 12), h - bottom + 5);
  }
  if (spec.shade) {
    ctx.fillStyle = "rgba(255, 92, 92, 0.18)";
    for (let i = 0; i < xs.length; i++) {
      if (!spec.shade[i]) continue;
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
  for (const s of spec.series) {
    if (s.lo) {
      ctx.fillStyle = s.color + "33";
      for (const run of runs(xs, s.lo, s.hi)) {
        ctx.beginPath();
        run.forEach((i, k) => (k ? ctx.lineTo(px(xs[i]), py(s.hi[i])) : ctx.moveTo(px(xs[i]), py(s.hi[i]))));
        for (let k = run.length - 1; k >= 0; k--) ctx.lineTo(px(xs[run[k]]), py(s.lo[run[k]]));
        ctx.closePath(); ctx.fill();
      }
    }
    ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.6; ctx.setLineDash(s.dash || []);
    for (const run of runs(xs, s.ys, s.ys)) {
      ctx.beginPath();
      run.forEach((i, k) => (k ? ctx.lineTo(px(xs[i]), py(s.ys[i])) : ctx.moveTo(px(xs[i]), py(s.ys[i]))));
      if (run.length === 1) ctx.arc(px(xs[run[0]]), py(s.ys[run[0]]), 1.5, 0, 2 * Math.PI);
      ctx.stroke();
      points += run.length;
    }
    ctx.setLineDash([]);
  }
  if (!points) {
    ctx.fillStyle = color("muted"); ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText("waiting for joined events…", (left + w) / 2, h / 2);
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

function renderNumbers(status, metrics, rates) {
  const w = status.window;
  setText("ranks-total", count(sample(metrics, "banditd_ranks_total")));
  setText("ranks-rate", isNum(rates.ranks) ? rates.ranks.toFixed(1) + " /s" : "– /s");
  setText("rewards-total", count(sample(metrics, "banditd_rewards_total")));
  setText("rewards-rate", isNum(rates.rewards) ? rates.rewards.toFixed(1) + " /s" : "– /s");
  setText("reward-mean", fmt(w.rewardMean));
  setText("window-events", `over ${count(w.events)} joined events`);
  setText("improvement", signed(w.improvement.value));
  setText("improvement-ci", `[${signed(w.improvement.lower)}, ${signed(w.improvement.upper)}]`);
  setText("exploration", pct(w.explorationRatio));
  setText("exploration-cap", `cap ${pct(status.explorationCap)} · min p ${fmt(w.propensityMin)}`);
  setText("lag-events", count(status.learner.lagEvents));
  setText("lag-seconds", `${fmt(status.learner.lagSeconds, 1)} s behind`);
}

function renderBadges(status) {
  const g = status.guardrail;
  badge("badge-serving", "serving: " + status.serving, status.serving === "policy" ? "ok" : "bad");
  badge("badge-guardrail", "guardrail: " + (g.enabled ? g.state : "off"), g.state === "tripped" ? "bad" : g.enabled ? "ok" : "");
  const alarms = status.drift.alarms;
  const recent = alarms.length && Date.now() - new Date(alarms[0].at).getTime() < 120000;
  badge("badge-drift", recent ? `drift: ${alarms[0].direction} shift` : `drift: ${alarms.length ? "quiet since " + clock(alarms[0].at) : "quiet"}`, recent ? "warn" : "ok");
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
  const dl = $("drift-alarms"); dl.replaceChildren();
  for (const a of d.alarms.slice(0, 10)) {
    const li = document.createElement("li"); li.className = a.direction;
    li.textContent = `${clock(a.at)} reward ${a.direction}: ${fmt(a.meanBefore)} → ${fmt(a.meanAfter)} (detected after ${a.detectedAfter} events)`;
    dl.append(li);
  }
  if (!d.alarms.length) { const li = document.createElement("li"); li.textContent = "no alarms"; dl.append(li); }
  setText("method", `Window: ${status.window.size} events, α = ${status.window.alpha}. ${status.window.method}.`);
}

function renderCharts(status) {
  const hs = status.history;
  const xs = hs.at;
  drawChart($("chart-reward"), { xs, series: [{ ys: hs.rewardMean, color: color("reward") }], digits: 2 });
  drawChart($("chart-value"), {
    xs, digits: 2,
    series: [
      { ys: hs.uniform, color: color("uniform"), dash: [3, 3], width: 1.2 },
      { ys: hs.baseline, lo: hs.baselineLower, hi: hs.baselineUpper, color: color("baseline") },
      { ys: hs.policy, lo: hs.policyLower, hi: hs.policyUpper, color: color("policy") },
    ],
    clampLo: -1.5, clampHi: 1.5,
  });
  drawChart($("chart-improvement"), {
    xs, digits: 2, shade: hs.tripped,
    series: [{ ys: hs.improvement, lo: hs.improvementLower, hi: hs.improvementUpper, color: color("policy") }],
    hlines: [{ y: 0, color: color("muted") }, { y: -status.guardrail.margin, color: color("bad") }],
    clampLo: -2, clampHi: 2,
  });
  drawChart($("chart-exploration"), {
    xs, digits: 2, yMin: 0, clampLo: 0,
    series: [{ ys: hs.explorationRatio, color: color("explore") }],
    hlines: [{ y: status.explorationCap, color: color("bad") }],
  });
  const t = state.traffic;
  drawChart($("chart-traffic"), {
    xs: t.map((p) => p.t), digits: 0, yMin: 0, clampLo: 0,
    series: [{ ys: t.map((p) => p.ranks), color: color("rank") }, { ys: t.map((p) => p.rewards), color: color("reward") }],
  });
  const l = state.lag;
  drawChart($("chart-lag"), {
    xs: l.map((p) => p.t), digits: 1, yMin: 0, clampLo: 0,
    series: [{ ys: l.map((p) => p.events), color: color("lag") }, { ys: l.map((p) => p.seconds), color: color("lagsec") }],
  });
}

function renderModels(body) {
  setText("models-at", "as of " + clock(new Date().toISOString()));
  const tbody = $("models").tBodies[0];
  tbody.replaceChildren();
  for (const m of body.models) {
    const tr = document.createElement("tr");
    if (m.serving) tr.className = "serving";
    const gain = m.served && m.served.improvement;
    const served = !m.served ? "–"
      : isNum(gain.value) ? `${signed(gain.value)} [${signed(gain.lower)}, ${signed(gain.upper)}] · ${m.served.events} ev`
      : `– · ${m.served.events} ev`;
    const cf = m.counterfactual ? `${fmt(m.counterfactual.policy.value)} (${signed(m.counterfactual.improvement.value)})` : "–";
    const cells = [
      "v" + m.version + (m.serving ? " ◀ serving" : "") + (m.restoredFrom ? ` (restored v${m.restoredFrom})` : ""),
      clock(m.createdAt), count(m.learnedCount), served, cf,
    ];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    const td = document.createElement("td");
    if (!m.serving) {
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

// -- polling --------------------------------------------------------------------------------------

async function poll() {
  try {
    const [status, text] = await Promise.all([
      request("/v1/loop/status").then((r) => r.json()),
      request("/metrics").then((r) => r.text()),
    ]);
    const metrics = parseMetrics(text);
    const t = Date.now() / 1000;
    const totals = { ranks: sample(metrics, "banditd_ranks_total") || 0, rewards: sample(metrics, "banditd_rewards_total") || 0 };
    const rates = {};
    if (state.last && t > state.last.t) {
      const dt = t - state.last.t;
      rates.ranks = Math.max(0, (totals.ranks - state.last.ranks) / dt);
      rates.rewards = Math.max(0, (totals.rewards - state.last.rewards) / dt);
      state.traffic.push({ t, ranks: rates.ranks, rewards: rates.rewards });
    }
    state.last = Object.assign({ t }, totals);
    state.lag.push({ t, events: status.learner.lagEvents, seconds: status.learner.lagSeconds });
    for (const series of [state.traffic, state.lag]) while (series.length > KEEP) series.shift();
    state.status = status;
    $("error").hidden = true;
    renderBadges(status);
    renderNumbers(status, metrics, rates);
    renderPanels(status);
    renderCharts(status);
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    if (Date.now() - state.modelsAt > MODELS_MS) {
      state.modelsAt = Date.now();
      request("/v1/models").then((r) => r.json()).then(renderModels).catch(showError);
    }
  } catch (error) {
    showError(error);
    if (error && error.status === 401) return; // wait for the key form
  }
  setTimeout(poll, POLL_MS);
}

window.addEventListener("resize", () => state.status && renderCharts(state.status));
document.addEventListener("DOMContentLoaded", () => { initKey(); poll(); });
