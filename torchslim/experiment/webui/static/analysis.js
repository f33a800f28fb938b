// The web UI's second step, inlined after index.html's script by the server: control with
// the experiment's token (kill, update), the hyper-parameter view (parallel coordinates
// coloured by the result), parameter importance, the Pareto plot and the comparison of two
// experiments. Uses index.html's helpers (h, s, frame, fmt, state, getJSON...).
"use strict";

// ---- the control token: ?token=... once, then kept for this tab only ----
function tokenKey(id) { return "torchslim-token:" + id; }
(function takeToken() {
  const id = route(), params = new URLSearchParams(location.search);
  if (id && params.get("token")) {
    sessionStorage.setItem(tokenKey(id), params.get("token"));
    history.replaceState(null, "", location.pathname + location.hash);  // keep it out of history
  }
})();
function token() { return state.exp ? sessionStorage.getItem(tokenKey(state.exp.id)) : null; }

async function postJSON(url, body) {
  const headers = {"Content-Type": "application/json"};
  if (token()) headers["X-Torchslim-Token"] = token();
  const r = await fetch(url, {method: "POST", headers, body: JSON.stringify(body), cache: "no-store"});
  const answer = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) { const e = new Error(answer.error || r.statusText); e.status = r.status; throw e; }
  return answer;
}

function controlMessage(text, bad) {
  state.controlMsg = {text, bad};
  const el = document.getElementById("control-msg");
  if (el) { el.textContent = text; el.className = bad ? "err" : "kv"; }
}

async function control(action, body) {
  try {
    const answer = await postJSON(`/api/experiments/${encodeURIComponent(state.exp.id)}/${action}`, body);
    controlMessage(action === "kill" ? `${answer.trial_id} killed (was ${answer.was.toLowerCase()})`
      : "updated: " + Object.entries(answer.changed).map(([k, [a, b]]) => `${k} ${fmt(a)} → ${fmt(b)}`).join(", "), false);
    refreshExperiment(state.exp.id);
  } catch (e) {
    controlMessage((e.status === 403 ? "refused: " : "failed: ") + e.message, true);
  }
}

// ---- cards added to the experiment page ----
function controlCard(exp) {
  const has = !!token();
  // what the user typed survives the page's refreshes (the form is rebuilt every 2 s)
  const drafts = state.drafts || (state.drafts = {});
  const field = (id, label, value, hint) => h("label", {class: "kv", style: "margin-right:10px"}, label + " ",
    h("input", {id, value: drafts[id] ?? value ?? "", placeholder: hint, size: 6, disabled: !has || null,
                oninput: ev => { drafts[id] = ev.target.value; }}));
  const form = h("div", {},
    field("upd-concurrency", "concurrency", exp.trialConcurrency, ""),
    field("upd-max", "max trials", exp.maxTrialNumber, "∞"),
    field("upd-duration", "duration", exp.maxExperimentDuration ? exp.maxExperimentDuration + "s" : "", "e.g. 30m"),
    h("button", {id: "update-btn", disabled: !has || null, onclick: () => {
      const num = v => (v.trim() === "" ? null : Number(v));
      const body = {trialConcurrency: num(document.getElementById("upd-concurrency").value),
                    maxTrialNumber: num(document.getElementById("upd-max").value)};
      const dur = document.getElementById("upd-duration").value.trim();
      if (dur) body.maxExperimentDuration = /^\d+(\.\d+)?$/.test(dur) ? Number(dur) : dur;
      state.drafts = {};
      control("update", body);
    }}, "update"));
  const others = (state.others || []).filter(e => e.id !== exp.id);
  const msg = state.controlMsg || {text: "", bad: false};
  return h("div", {class: "card", id: "control"},
    h("h2", {}, "Control ", h("span", {class: "badge " + (has ? "s-RUNNING" : "s-WAITING"), id: "control-mode"},
      has ? "token set" : "read-only")),
    has ? form : h("div", {class: "kv"}, "read-only: open the link with ?token=… printed when the UI started, or ",
      h("input", {id: "token-input", placeholder: "paste the token", size: 34}), " ",
      h("button", {id: "token-btn", onclick: () => {
        const v = document.getElementById("token-input").value.trim();
        if (v) { sessionStorage.setItem(tokenKey(exp.id), v); render(); }
      }}, "use token")),
    h("div", {id: "control-msg", class: msg.bad ? "err" : "kv"}, msg.text),
    others.length ? h("div", {class: "kv"}, "compare with ",
      h("select", {id: "compare-with", onchange: ev => { if (ev.target.value) location.href = `/compare/${encodeURIComponent(exp.id)}/${encodeURIComponent(ev.target.value)}`; }},
        h("option", {value: ""}, "…"), others.map(e => h("option", {value: e.id}, `${e.id} ${e.name || ""}`)))) : null);
}

const numeric = v => typeof v === "number" && Number.isFinite(v);
// blue (worse) → red (better), whichever way the experiment optimises
function colorScale(lo, hi, mode) {
  return v => {
    let t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    if (mode === "minimize") t = 1 - t;
    return `hsl(${Math.round(230 - 230 * t)},75%,48%)`;
  };
}

// nested choices ({"prune_method": {"_name": "l1", "sparsity": 0.5}}) -> "prune_method._name"...
function flat(params, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(params || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flat(v, prefix + k + ".", out);
    else out[prefix + k] = v;
  }
  return out;
}

// parallel coordinates: one axis per parameter, then the result; a line per trial
function parallelCoordinates(trials, exp) {
  const done = trials.filter(t => numeric(t.finalValue)).map(t => ({...t, flat: flat(t.parameter)}));
  if (done.length < 2) return h("div", {class: "empty"}, "the hyper-parameter view needs two results");
  const keys = [];
  for (const t of done) for (const [k, v] of Object.entries(t.flat))
    if (!keys.includes(k) && (numeric(v) || typeof v === "string" || typeof v === "boolean")) keys.push(k);
  const axes = keys.map(k => ({key: k, ...axis(k)}));
  function axis(k) {
    const vals = done.map(t => t.flat[k]).filter(v => v != null);
    if (vals.every(numeric)) {
      const [lo, hi] = extent(vals);
      if (lo > 0 && hi / lo >= 100) {  // a log-scaled parameter (lr...): a log axis
        const a = Math.log(lo), b = Math.log(hi);
        return {k: k + " (log)", lo, hi, pos: v => (Math.log(v) - a) / (b - a)};
      }
      return {k, lo, hi, pos: v => (hi > lo ? (v - lo) / (hi - lo) : 0.5)};
    }
    const cats = [...new Set(vals.map(String))].sort();
    return {k, cats, pos: v => (cats.length > 1 ? cats.indexOf(String(v)) / (cats.length - 1) : 0.5)};
  }
  const [ylo, yhi] = extent(done.map(t => t.finalValue));
  axes.push({k: "result", lo: ylo, hi: yhi, pos: v => (yhi > ylo ? (v - ylo) / (yhi - ylo) : 0.5), result: true});
  const W = 1280, H = 320, L = 60, R = 60, T = 26, B = 34;
  const x = i => L + i * (W - L - R) / Math.max(axes.length - 1, 1), y = p => H - B - p * (H - T - B);
  const color = colorScale(ylo, yhi, exp.optimizeMode);
  const svg = s("svg", {class: "chart", id: "hp-view", viewBox: `0 0 ${W} ${H}`});
  const order = [...done].sort((a, b) => (exp.optimizeMode === "minimize" ? b.finalValue - a.finalValue : a.finalValue - b.finalValue));
  for (const t of order) {  // best drawn last, on top
    const pts = axes.map((a, i) => {
      const v = a.result ? t.finalValue : t.flat[a.key];
      return v == null ? null : `${x(i)},${y(a.pos(v))}`;
    }).filter(Boolean).join(" ");
    svg.append(s("polyline", {class: "curve", points: pts, stroke: color(t.finalValue),
      "stroke-width": t.trialJobId === state.selected ? 3 : 1.6, "stroke-opacity": 0.75,
      onclick: () => select(t.trialJobId)}, title(`${t.trialJobId}: ${fmt(t.finalValue)}\n${paramText(t.parameter)}`)));
  }
  axes.forEach((a, i) => {
    svg.append(s("line", {class: "axis", x1: x(i), x2: x(i), y1: T, y2: H - B}));
    svg.append(s("text", {x: x(i), y: H - B + 18, "text-anchor": "middle", style: "font-weight:600"}, a.k));
    const labels = a.cats ? a.cats.map(c => [c, a.pos(c)]) : [[a.lo, 0], [a.hi, 1]];
    for (const [lab, p] of labels) svg.append(s("text", {x: x(i) + 5, y: y(p) + 4}, a.cats ? lab : fmt(lab)));
  });
  return svg;
}

function importanceView() {
  const imp = state.importance;
  if (!imp) return h("div", {class: "empty"}, "computing…");
  const entries = Object.entries(imp.importance || {});
  if (!entries.length) return h("div", {class: "empty"}, imp.note || imp.error || "no importance yet");
  const W = 640, row = 26, L = 170, H = entries.length * row + 24;
  const svg = s("svg", {class: "chart", id: "importance", viewBox: `0 0 ${W} ${H}`});
  entries.forEach(([k, v], i) => {
    svg.append(s("text", {x: L - 8, y: 18 + i * row, "text-anchor": "end"}, k));
    svg.append(s("rect", {x: L, y: 6 + i * row, width: Math.max(1, v * (W - L - 60)), height: row - 10,
                          fill: "#2563eb", "fill-opacity": 0.8}, title(`${k}: ${fmt(v)}`)));
    svg.append(s("text", {x: L + v * (W - L - 60) + 6, y: 18 + i * row}, fmt(v)));
  });
  return [svg, h("div", {class: "kv"}, `${imp.method} over ${imp.trials} successful trials`)];
}

function objectivesOf(exp) { return (exp.config && exp.config.objectives) || []; }

// Pareto plot of the first two objectives; the front is joined by a line
function paretoView(trials, exp) {
  const [a, b] = objectivesOf(exp);
  const pts = trials.filter(t => t.status === "SUCCEEDED" && t.value && numeric(t.value[a.name]) && numeric(t.value[b.name]))
    .map(t => ({t, x: t.value[a.name], y: t.value[b.name]}));
  if (!pts.length) return h("div", {class: "empty"}, "no results yet");
  const better = (u, v, d) => (d === "maximize" ? u >= v : u <= v);
  const front = pts.filter(p => !pts.some(q => q !== p && better(q.x, p.x, a.direction) && better(q.y, p.y, b.direction)
    && (q.x !== p.x || q.y !== p.y)));
  const f = frame(extent(pts.map(p => p.x)), extent(pts.map(p => p.y)), `${a.name} (${a.direction})`, `${b.name} (${b.direction})`, false);
  f.svg.setAttribute("id", "pareto");
  const line = [...front].sort((p, q) => p.x - q.x).map(p => `${f.x(p.x)},${f.y(p.y)}`).join(" ");
  f.svg.append(s("polyline", {points: line, fill: "none", stroke: "#f59e0b", "stroke-width": 2}));
  for (const p of pts) {
    const on = front.includes(p);
    f.svg.append(s("circle", {class: "pt", cx: f.x(p.x), cy: f.y(p.y), r: on ? 6 : 4, fill: on ? "#f59e0b" : "#9ca3af",
      stroke: "#fff", onclick: () => select(p.t.trialJobId)},
      title(`${p.t.trialJobId}${on ? " (Pareto front)" : ""}: ${a.name} ${fmt(p.x)}, ${b.name} ${fmt(p.y)}\n${paramText(p.t.parameter)}`)));
  }
  return [f.svg, h("div", {class: "kv"}, `${front.length} trial(s) on the Pareto front`)];
}

async function loadImportance(exp) {
  const n = exp.counts && exp.counts.SUCCEEDED || 0;
  if (state.importanceAt === n && state.importanceFor === exp.id) return;
  state.importanceAt = n; state.importanceFor = exp.id;
  try { state.importance = await getJSON(`/api/experiments/${encodeURIComponent(exp.id)}/importance`); }
  catch (e) { state.importance = {error: "cannot compute importance: " + e.message}; }
  const el = document.getElementById("importance-card");
  if (el) el.replaceChildren(h("h2", {}, "Parameter importance"), ...[importanceView()].flat());
}

async function loadOthers() {
  if (state.others) return;
  try { state.others = await getJSON("/api/experiments"); } catch (e) { state.others = []; }
}

const baseRender = render;
render = function () {
  const focused = document.activeElement && document.activeElement.id;
  baseRender();
  const exp = state.exp, trials = state.trials, app = document.getElementById("app");
  document.getElementById("mode").textContent = token() ? "experiments · control enabled" : "experiments · read-only view";
  const charts = app.querySelector(".charts");
  const cards = [h("div", {class: "card"}, h("h2", {}, "Hyper-parameters (each line a trial, coloured by result: red = better)"),
                   parallelCoordinates(trials, exp)),
                 h("div", {class: "charts"},
                   h("div", {class: "card", id: "importance-card"}, h("h2", {}, "Parameter importance"), importanceView()),
                   objectivesOf(exp).length >= 2
                     ? h("div", {class: "card"}, h("h2", {}, "Pareto front"), paretoView(trials, exp))
                     : h("div", {class: "card"}, h("h2", {}, "Pareto front"), h("div", {class: "empty"},
                         "single objective (name objectives in the config to see a front)")))];
  charts.after(...cards);
  app.querySelector(".summary").after(controlCard(exp));
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  loadImportance(exp);
  if (!state.others) loadOthers().then(() => { if (state.others.length > 1) render(); });
};

const baseLogPanel = logPanel;
logPanel = function () {
  const parts = baseLogPanel();
  const t = state.trials.find(x => x.trialJobId === state.selected);
  if (t && ["RUNNING", "WAITING"].includes(t.status))
    parts.splice(1, 0, h("button", {id: "kill-btn", onclick: () => control("kill", {trial: t.trialJobId})}, `kill ${t.trialJobId}`));
  return parts;
};

// ---- /compare/A/B: two experiments side by side ----
function compareRoute() {
  const m = location.pathname.match(/^\/compare\/([^/]+)\/([^/]+)\/?$/);
  return m ? [decodeURIComponent(m[1]), decodeURIComponent(m[2])] : null;
}

async function renderCompare(ids) {
  let data;
  try {
    data = await Promise.all(ids.map(async id => ({exp: await getJSON(`/api/experiments/${encodeURIComponent(id)}`),
                                                    trials: await getJSON(`/api/experiments/${encodeURIComponent(id)}/trials`)})));
  } catch (e) { banner("cannot read: " + e.message); return; }
  const colors = ["#2563eb", "#dc2626"];
  const all = data.flatMap(d => d.trials.filter(t => numeric(t.finalValue)).map(t => t.finalValue));
  const maxSeq = Math.max(1, ...data.flatMap(d => d.trials.map(t => t.sequence)));
  const mode = data[0].exp.optimizeMode;
  const app = document.getElementById("app");
  if (!all.length) { app.replaceChildren(h("div", {class: "card empty"}, "no results to compare yet")); return; }
  const f = frame([0, maxSeq], extent(all), "trial", `best so far (${mode})`, true);
  f.svg.setAttribute("id", "compare");
  data.forEach((d, i) => {
    let best = null, path = "";
    for (const t of d.trials.filter(t => numeric(t.finalValue)).sort((a, b) => a.sequence - b.sequence)) {
      if (best === null || (mode === "minimize" ? t.finalValue < best : t.finalValue > best)) best = t.finalValue;
      path += `${path ? "L" : "M"}${f.x(t.sequence)},${f.y(best)}`;
    }
    f.svg.append(s("path", {d: path, fill: "none", stroke: colors[i], "stroke-width": 2.2}));
  });
  const row = (label, get) => h("tr", {}, h("th", {}, label), data.map(d => h("td", {}, get(d))));
  app.replaceChildren(h("div", {class: "card"}, h("h2", {}, "Comparison"),
    h("table", {}, h("tbody", {},
      row("experiment", d => h("a", {href: "/experiments/" + encodeURIComponent(d.exp.id)}, `${d.exp.id} ${d.exp.name || ""}`)),
      row("colour", d => h("span", {style: `color:${colors[data.indexOf(d)]};font-weight:700`}, "━━")),
      row("status", d => badge(d.exp.status)), row("tuner", d => d.exp.tuner || ""),
      row("trials finished", d => String(d.exp.finished)),
      row("best", d => (d.exp.best ? fmt(d.exp.best.value) : "–")),
      row("best parameters", d => (d.exp.best ? paramText(d.exp.best.parameter) : "–")),
      row("elapsed", d => fmtDuration(d.exp.elapsed))))),
    h("div", {class: "card", style: "max-width:900px"}, h("h2", {}, "Best result so far per trial"), f.svg));
  document.title = `compare ${ids.join(" vs ")} · torchslim`;
}

const baseStart = start;
start = function () {
  const ids = compareRoute();
  if (ids) renderCompare(ids); else baseStart();
};
