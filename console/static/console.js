// The console page: one time axis for the swarm's nodes and tasks, the probe's requests and
// what the swarm and the autoscaler did. State comes from /api/events (server-sent events:
// everything first, then what changed). Everything shown is data: the DOM is built with
// createElement / textContent, never from HTML strings.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const GUTTER = 230;   // px for row labels on the left
const RIGHT = 56;     // px for the latency scale on the right
const LANE = 14;
const ENDED = new Set(["shutdown", "failed", "rejected"]);
const BAD_MARKS = new Set(["task_failed", "task_rejected", "task_killed", "node_down",
  "rollback_started", "update_paused", "rollback_paused"]);

const store = {
  seq: 0, offset: 0, historyS: 900,
  nodes: new Map(), services: new Map(), tasks: new Map(), marks: new Map(),
  seconds: new Map(), rates: [], totals: { requests: 0, failed: 0 }, sources: {},
};
const view = { windowS: 300, selectedSecond: null, renderQueued: false, maxLag: 0,
  marksVersion: 0, marksDrawn: -1 };
const releaseIndex = new Map();
const serviceIndex = new Map();

// -- small DOM helpers ----------------------------------------------------------------------
function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function titled(node, text) {
  node.appendChild(svg("title", {}, text));
  return node;
}
function pad(n) { return String(n).padStart(2, "0"); }
function clock(t) {
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function clockMs(t) {
  return `${clock(t)}.${String(Math.floor((t % 1) * 1000)).padStart(3, "0")}`;
}
function releaseClass(release) {
  if (!releaseIndex.has(release)) releaseIndex.set(release, releaseIndex.size % 6);
  return `rel-${releaseIndex.get(release)}`;
}
function serviceClass(name) {
  if (!serviceIndex.has(name)) serviceIndex.set(name, serviceIndex.size % 5);
  return `svc-${serviceIndex.get(name)}`;
}
function serverNow() { return Date.now() / 1000 + store.offset; }

// -- the stream -------------------------------------------------------------------------------
function merge(patch) {
  const received = Date.now() / 1000;
  store.offset = patch.now - received;
  if (patch.full) {
    for (const key of ["nodes", "services", "tasks", "marks", "seconds"]) store[key].clear();
    store.rates = [];
  }
  store.seq = patch.seq;
  store.historyS = patch.history_s;
  for (const n of patch.nodes) store.nodes.set(n.id, n);
  for (const s of patch.services) store.services.set(s.id, s);
  let lag = null;
  for (const t of patch.tasks) {
    const before = store.tasks.get(t.id);
    store.tasks.set(t.id, t);
    const since = t.phases[t.phases.length - 1][0];
    const changed = !before || before.phase !== t.phase;
    if (!patch.full && changed && patch.now - since < 30) {
      lag = Math.max(lag === null ? 0 : lag, patch.now - since);
    }
  }
  for (const m of patch.marks) store.marks.set(m.id, m);
  if (patch.full || patch.marks.length || patch.removed.some((r) => r.kind === "mark")) view.marksVersion++;
  for (const s of patch.seconds) store.seconds.set(s.t, s);
  for (const r of patch.rates) store.rates.push(r);
  for (const gone of patch.removed) {
    const key = { task: "tasks", service: "services", mark: "marks", second: "seconds" }[gone.kind];
    if (key === "seconds") store.seconds.delete(Number(gone.id));
    else if (key === "marks") store.marks.delete(Number(gone.id));
    else if (key) store[key].delete(gone.id);
    else if (gone.kind === "rate") store.rates = store.rates.filter((r) => String(r.t) !== gone.id);
  }
  if (patch.totals) store.totals = patch.totals;
  if (patch.sources) store.sources = patch.sources;
  if (lag !== null) {
    view.maxLag = Math.max(view.maxLag, lag);
    const out = document.getElementById("lag");
    out.textContent = `${lag.toFixed(2)} s`;
    out.dataset.lag = lag.toFixed(3);
    out.dataset.maxLag = view.maxLag.toFixed(3);
    out.title = `largest so far: ${view.maxLag.toFixed(2)} s`;
  }
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/api/events");
  source.addEventListener("state", (event) => {
    merge(JSON.parse(event.data));
    status.textContent = "live";
    status.dataset.state = "live";
    queueRender();
  });
  source.onerror = () => {
    status.textContent = "reconnecting";
    status.dataset.state = "closed";
  };
}

function queueRender() {
  // At most one redraw per frame, and never more than about four a second: a long window
  // with hundreds of tasks takes tens of milliseconds to draw.
  if (view.renderQueued) return;
  view.renderQueued = true;
  const wait = Math.max(0, (view.lastRender || 0) + 250 - performance.now());
  setTimeout(() => requestAnimationFrame(() => {
    view.renderQueued = false;
    view.lastRender = performance.now();
    render();
  }), wait);
}

// -- rendering --------------------------------------------------------------------------------
function render() {
  const started = performance.now();
  renderSummary();
  renderChart();
  renderMarks();
  renderReleases();
  document.getElementById("chart").dataset.renderMs = (performance.now() - started).toFixed(1);
}

function renderSummary() {
  const totals = store.totals;
  document.getElementById("total-requests").textContent = totals.requests;
  const failed = document.getElementById("total-failed");
  failed.textContent = totals.failed;
  failed.dataset.failed = String(totals.failed);
  const now = Math.floor(serverNow());
  const releases = {};
  const latencies = [];
  for (let t = now - 6; t < now - 1; t++) {
    const s = store.seconds.get(t);
    if (!s) continue;
    for (const [release, n] of Object.entries(s.releases)) releases[release] = (releases[release] || 0) + n;
    if (s.p50_ms !== null) latencies.push([s.p50_ms, s.p99_ms]);
  }
  const answering = document.getElementById("answering");
  const names = Object.keys(releases).sort();
  answering.textContent = names.length ? names.map((r) => `${r}: ${releases[r]}`).join("  ") : "-";
  answering.dataset.releases = names.join(",");
  document.getElementById("latency").textContent = latencies.length
    ? `${Math.max(...latencies.map((l) => l[0])).toFixed(1)} / ${Math.max(...latencies.map((l) => l[1])).toFixed(1)} ms`
    : "-";
  for (const name of ["docker", "probe", "prometheus"]) {
    const pill = document.getElementById(`source-${name}`);
    const source = store.sources[name] || {};
    pill.dataset.state = source.state || "";
    let text = { docker: "Docker", probe: "probe", prometheus: "Prometheus" }[name];
    if (name === "probe" && source.state === "on") text += ` ${source.rate}/s`;
    pill.textContent = `${text}: ${source.state || "?"}`;
    pill.title = [source.url || source.host || "", source.message || ""].filter(Boolean).join("\n");
  }
}

function timeTicks(t0, t1) {
  const span = t1 - t0;
  const step = [5, 10, 15, 30, 60, 120, 300].find((s) => span / s <= 10) || 600;
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return ticks;
}

function renderChart() {
  const holder = document.getElementById("chart");
  const width = Math.max(600, holder.clientWidth);
  const now = serverNow();
  const t1 = now;
  const t0 = now - view.windowS;
  const plotW = width - GUTTER - RIGHT;
  const x = (t) => GUTTER + ((t - t0) / (t1 - t0)) * plotW;
  const clampX = (t) => Math.max(GUTTER, Math.min(GUTTER + plotW, x(t)));
  const root = svg("svg", { width, role: "img" });
  const back = svg("g");  // grid and mark lines, under everything
  const front = svg("g");
  root.append(back, front);
  let y = 0;

  // time axis
  const axis = svg("g", { class: "axis" });
  for (const t of timeTicks(t0, t1)) {
    axis.appendChild(svg("text", { x: x(t), y: 12, "text-anchor": "middle" }, clock(t)));
    back.appendChild(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: 16, y2: "100%" }));
  }
  front.appendChild(axis);
  y = 18;

  // marks
  const marksY = y;
  front.appendChild(svg("text", { class: "group-label", x: 6, y: y + 11 }, "what happened"));
  const visibleMarks = [...store.marks.values()].filter((m) => m.t >= t0 && m.t <= t1);
  for (const m of visibleMarks) {
    const bad = BAD_MARKS.has(m.kind);
    const category = m.kind === "autoscaler" ? "autoscaler"
      : (m.kind.startsWith("update") || m.kind.startsWith("rollback")) ? "update" : "";
    const dot = svg("circle", { class: `mark-dot ${category} ${bad ? "bad" : ""}`, cx: x(m.t),
      cy: marksY + 7, r: category ? 5 : 3.5, "data-kind": "mark", "data-mark": m.kind });
    front.appendChild(titled(dot, `${clockMs(m.t)}  ${m.text}`));
    if (category || bad || m.kind.startsWith("node")) {
      back.appendChild(svg("line", { class: `mark-line ${bad ? "bad" : ""}`, x1: x(m.t), x2: x(m.t),
        y1: marksY + 12, y2: "100%" }));
    }
  }
  y += 20;

  // services: replicas, release, update spans
  const services = [...store.services.values()]
    .filter((s) => s.removed === null || s.removed >= t0)
    .sort((a, b) => a.name.localeCompare(b.name));
  const running = new Map();
  for (const task of store.tasks.values()) {
    if (task.phase === "healthy" || task.phase === "running") {
      running.set(task.service_id, (running.get(task.service_id) || 0) + 1);
    }
  }
  front.appendChild(svg("text", { class: "group-label", x: 6, y: y + 11 }, "services"));
  y += 16;
  for (const s of services) {
    const replicas = s.replicas === null ? "global" : `${running.get(s.id) || 0}/${s.replicas}`;
    const update = s.update_state ? ` · ${s.update_state.replace("_", " ")}` : "";
    const label = svg("text", { class: "row-label", x: 14, y: y + 10, "data-kind": "service",
      "data-service": s.name, "data-release": s.release, "data-update": s.update_state },
      `${s.name} · ${replicas} · release ${s.release}${update}`);
    front.appendChild(titled(label, `${s.image}${s.update_message ? "\n" + s.update_message : ""}`));
    if (s.update_started && (s.update_completed || now) >= t0) {
      const end = s.update_completed || now;
      const rollback = s.update_state.startsWith("rollback");
      const span = svg("rect", { class: `update-span ${rollback ? "rollback" : ""}`,
        x: clampX(s.update_started), y, height: LANE,
        width: Math.max(1, clampX(end) - clampX(s.update_started)) });
      front.appendChild(titled(span, `${s.name}: ${s.update_state} ${s.update_message}`));
    }
    y += LANE + 2;
  }

  // nodes, each with its tasks in lanes
  y += 6;
  const nodes = [...store.nodes.values()].sort((a, b) => a.hostname.localeCompare(b.hostname));
  const tasksByNode = new Map();
  for (const task of store.tasks.values()) {
    const end = taskEnd(task, now);
    if (end < t0) continue;
    if (!tasksByNode.has(task.node_id)) tasksByNode.set(task.node_id, []);
    tasksByNode.get(task.node_id).push(task);
  }
  const unassigned = tasksByNode.get("") || [];
  const groups = nodes.map((n) => [n, tasksByNode.get(n.id) || []]);
  if (unassigned.length) groups.push([null, unassigned]);
  for (const [node, tasks] of groups) {
    const title = node
      ? `${node.hostname} · ${node.role}${node.leader ? " (leader)" : ""} · ${node.state} · ${node.availability}`
      : "not on a node yet";
    const header = svg("text", { class: "group-label", x: 6, y: y + 11, "data-kind": "node",
      "data-node": node ? node.hostname : "", "data-state": node ? node.state : "" }, title);
    front.appendChild(header);
    if (node && node.state !== "ready") {
      front.appendChild(svg("rect", { class: "node-down", x: GUTTER, y, width: plotW, height: 14 }));
    }
    y += 16;
    const byService = new Map();
    for (const task of tasks) {
      if (!byService.has(task.service)) byService.set(task.service, []);
      byService.get(task.service).push(task);
    }
    for (const name of [...byService.keys()].sort()) {
      const lanes = packLanes(byService.get(name), now);
      front.appendChild(svg("text", { class: "row-label", x: 14, y: y + 10 }, name));
      lanes.forEach((lane, i) => {
        for (const task of lane) front.appendChild(taskBar(task, y + i * (LANE + 2), x, clampX, now));
      });
      y += lanes.length * (LANE + 2) + 2;
    }
    y += 4;
  }

  // requests: answers per second by release, failures in red on top
  y += 6;
  const seconds = [...store.seconds.values()].filter((s) => s.t >= t0 - 1 && s.t <= t1);
  const maxCount = Math.max(4, ...seconds.map((s) => s.ok + s.failed));
  const chartH = 70;
  front.appendChild(svg("text", { class: "group-label", x: 6, y: y + 11 }, "requests per second"));
  front.appendChild(svg("text", { class: "row-label", x: 14, y: y + 26 }, "by release; failed in red"));
  front.appendChild(svg("text", { class: "row-label", x: 14, y: y + 40 }, `scale: ${maxCount}/s`));
  const barW = Math.max(1, plotW / view.windowS - 1);
  const base = y + chartH;
  for (const s of seconds) {
    const left = x(s.t);
    let top = base;
    for (const release of Object.keys(s.releases).sort()) {
      const answered = s.releases[release];
      const h = (answered / maxCount) * chartH;
      top -= h;
      front.appendChild(svg("rect", { class: `second-bar ${releaseClass(release)}`, x: left, y: top,
        width: barW, height: h, "data-kind": "second", "data-release": release, "data-t": s.t }));
    }
    if (s.failed) {
      const h = (s.failed / maxCount) * chartH;
      top -= h;
      const bar = svg("rect", { class: "failed-bar", x: left, y: top, width: barW, height: h,
        "data-kind": "failed-second", "data-t": s.t });
      front.appendChild(titled(bar, `${clock(s.t)}: ${s.failed} failed (${Object.entries(s.failures).map(([k, v]) => `${k}: ${v}`).join(", ")})`));
    }
    if (s.t === view.selectedSecond) {
      front.appendChild(svg("rect", { class: "selected-second", x: left, y, width: Math.max(barW, 3),
        height: chartH }));
    }
  }
  // One layer takes the clicks for every second (one element per second would cost a lot
  // of redrawing with a long window).
  const hit = svg("rect", { class: "second-hit", x: GUTTER, y, width: plotW, height: chartH,
    "data-kind": "seconds" });
  hit.addEventListener("click", (event) => {
    const box = hit.getBoundingClientRect();
    selectSecond(Math.floor(t0 + ((event.clientX - box.left) / box.width) * (t1 - t0)));
  });
  front.appendChild(titled(hit, "click a second to list its requests"));
  y += chartH + 8;

  // latency: p50 and p99 per second
  const latH = 50;
  const maxMs = Math.max(10, ...seconds.map((s) => s.p99_ms || 0));
  front.appendChild(svg("text", { class: "group-label", x: 6, y: y + 11 }, "latency"));
  front.appendChild(svg("text", { class: "row-label", x: 14, y: y + 26 }, "p50 (blue), p99 (orange)"));
  front.appendChild(svg("text", { class: "row-label", x: GUTTER + plotW + 4, y: y + 10 }, `${Math.round(maxMs)} ms`));
  front.appendChild(svg("text", { class: "row-label", x: GUTTER + plotW + 4, y: y + latH }, "0"));
  for (const [key, cls] of [["p50_ms", "p50"], ["p99_ms", "p99"]]) {
    const points = seconds.filter((s) => s[key] !== null).sort((a, b) => a.t - b.t)
      .map((s) => `${(x(s.t) + barW / 2).toFixed(1)},${(y + latH - (s[key] / maxMs) * latH).toFixed(1)}`);
    if (points.length) front.appendChild(svg("polyline", { class: cls, points: points.join(" ") }));
  }
  y += latH + 10;

  // instances: who answered, coloured by the release it reported
  const instances = new Map();
  for (const s of seconds) {
    for (const [instance, info] of Object.entries(s.instances)) {
      if (!instances.has(instance)) instances.set(instance, []);
      instances.get(instance).push([s.t, info]);
    }
  }
  const byInstance = new Map([...store.tasks.values()].map((t) => [t.instance, t]));
  front.appendChild(svg("text", { class: "group-label", x: 6, y: y + 11 }, "answered by"));
  y += 16;
  for (const [instance, cells] of instances) {
    const task = byInstance.get(instance);
    front.appendChild(svg("text", { class: "row-label", x: 14, y: y + 9, "data-kind": "instance",
      "data-instance": instance }, task ? `${task.name} (${instance})` : instance));
    // Consecutive seconds answered on the same release are one bar.
    cells.sort((a, b) => a[0] - b[0]);
    let run = null;
    const flush = () => {
      if (!run) return;
      const bar = svg("rect", { class: releaseClass(run.release), x: x(run.from), y,
        width: Math.max(barW, x(run.to + 1) - x(run.from) - 1), height: 10,
        "data-kind": "answered", "data-release": run.release });
      front.appendChild(titled(bar, `${clock(run.from)}-${clock(run.to + 1)} ${instance}: ` +
        `${run.n} answers, release ${run.release}`));
    };
    for (const [t, info] of cells) {
      if (run && run.release === info.release && t === run.to + 1) {
        run.to = t;
        run.n += info.n;
      } else {
        flush();
        run = { from: t, to: t, n: info.n, release: info.release };
      }
    }
    flush();
    y += 13;
  }

  // the shop's own request rate, from Prometheus
  y += 8;
  const prometheus = store.sources.prometheus || {};
  front.appendChild(svg("text", { class: "group-label", x: 6, y: y + 11 }, "shop request rate (Prometheus)"));
  const rates = store.rates.filter((r) => r.t >= t0 - 10);
  if (prometheus.state !== "ok" && !rates.length) {
    const why = prometheus.state === "off" ? "not asked (CONSOLE_PROMETHEUS_URL is empty)"
      : "not reachable: `make autoscale` deploys it";
    front.appendChild(svg("text", { class: "row-label", x: GUTTER, y: y + 11, "data-kind": "rates" }, why));
    y += 22;
  } else {
    const rateH = 50;
    const names = [...new Set(rates.flatMap((r) => Object.keys(r.rates)))].sort();
    const maxRate = Math.max(1, ...rates.flatMap((r) => Object.values(r.rates)));
    front.appendChild(svg("text", { class: "row-label", x: GUTTER + plotW + 4, y: y + 10 }, `${maxRate.toFixed(0)}/s`));
    names.forEach((name, i) => {
      const points = rates.filter((r) => name in r.rates)
        .map((r) => `${clampX(r.t).toFixed(1)},${(y + rateH - (r.rates[name] / maxRate) * rateH).toFixed(1)}`);
      if (points.length) front.appendChild(svg("polyline", { class: `rate-line ${serviceClass(name)}`, points: points.join(" ") }));
      front.appendChild(svg("text", { class: `row-label`, x: 14, y: y + 24 + i * 12, "data-kind": "rate-service" },
        `${name}: ${(rates.length ? rates[rates.length - 1].rates[name] || 0 : 0).toFixed(1)}/s`));
    });
    y += Math.max(rateH, 24 + names.length * 12) + 6;
  }

  root.setAttribute("height", y + 4);
  root.setAttribute("viewBox", `0 0 ${width} ${y + 4}`);
  holder.replaceChildren(root);
}

function taskEnd(task, now) {
  const last = task.phases[task.phases.length - 1];
  return ENDED.has(last[1]) ? last[0] : now;
}

function packLanes(tasks, now) {
  const lanes = [];
  const ends = [];
  for (const task of tasks.slice().sort((a, b) => a.created - b.created)) {
    let i = ends.findIndex((end) => end <= task.created);
    if (i < 0) { i = lanes.length; lanes.push([]); ends.push(0); }
    lanes[i].push(task);
    ends[i] = taskEnd(task, now) + 1;
  }
  return lanes;
}

function taskBar(task, y, x, clampX, now) {
  const group = svg("g", { "data-kind": "task", "data-task": task.id, "data-service": task.service,
    "data-release": task.release, "data-phase": task.phase, "data-node": task.node });
  const phases = task.phases;
  for (let i = 0; i < phases.length; i++) {
    const [since, phase] = phases[i];
    const until = i + 1 < phases.length ? phases[i + 1][0] : (ENDED.has(phase) ? since + 1 : now);
    const left = clampX(since);
    const right = clampX(until);
    if (right <= left && !ENDED.has(phase)) continue;
    group.appendChild(svg("rect", { class: `ph-${phase}`, x: left, y, width: Math.max(2, right - left), height: LANE }));
  }
  const start = clampX(task.created);
  const end = clampX(taskEnd(task, now));
  if (end - start > 26) {
    group.appendChild(svg("text", { class: "task-text", x: start + 3, y: y + 10 },
      end - start > 90 ? `${task.name} · ${task.release}` : task.release));
  }
  // The tooltip is made when the pointer first comes over the bar: hundreds of bars are
  // redrawn several times a second, and few are ever hovered.
  group.addEventListener("mouseenter", () => {
    const lines = [`${task.name} · release ${task.release} · ${task.phase}`, `image ${task.image}`,
      `node ${task.node || "-"} · task ${task.id}`,
      ...phases.map(([since, phase]) => `${clockMs(since)}  ${phase}`)];
    if (task.error) lines.push(`error: ${task.error}`);
    if (task.message) lines.push(`message: ${task.message}`);
    titled(group, lines.join("\n"));
  }, { once: true });
  return group;
}

function renderMarks() {
  if (view.marksDrawn === view.marksVersion) return;  // the list changes only with the marks
  view.marksDrawn = view.marksVersion;
  const list = document.getElementById("marks");
  const marks = [...store.marks.values()].sort((a, b) => b.t - a.t).slice(0, 300);
  const items = marks.map((m) => {
    const item = el("li", { "data-mark": m.kind, class: BAD_MARKS.has(m.kind) ? "bad" : "" });
    item.append(el("span", { class: "time" }, `${clockMs(m.t)} `), el("span", { class: "kind" }, m.kind.replaceAll("_", " ")));
    item.append(document.createTextNode(m.text));
    const figures = Object.entries(m.detail || {}).filter(([, v]) => v !== null && v !== "" && v !== undefined);
    if (figures.length) item.title = figures.map(([k, v]) => `${k}: ${v}`).join("\n");
    return item;
  });
  list.replaceChildren(...items);
}

// -- requests and stories -----------------------------------------------------------------------
async function selectSecond(t) {
  view.selectedSecond = t;
  queueRender();
  document.getElementById("requests-when").textContent = `sent ${clock(t)}`;
  const body = document.querySelector("#requests tbody");
  const response = await fetch(`/api/requests?start=${t}&end=${t + 1}`);
  const requests = response.ok ? await response.json() : [];
  body.replaceChildren(...requests.map((r) => {
    const row = el("tr", { class: r.error ? "failed" : "", "data-request": r.request_id });
    row.append(el("td", {}, clockMs(r.sent)), el("td", {}, r.request_id),
      el("td", {}, r.error ? `${r.error}` : r.status), el("td", {}, r.latency_ms.toFixed(1)),
      el("td", {}, r.release || "-"), el("td", {}, r.instance || "-"));
    row.addEventListener("click", () => showStory(r.request_id));
    return row;
  }));
}

async function showStory(requestId) {
  document.getElementById("story-id").textContent = `${requestId} (reading the logs...)`;
  const sources = document.getElementById("story-sources");
  const body = document.querySelector("#story tbody");
  body.replaceChildren();
  sources.replaceChildren();
  const response = await fetch(`/api/requests/${encodeURIComponent(requestId)}/story`);
  const story = await response.json();
  if (!response.ok) {
    document.getElementById("story-id").textContent = `${requestId}: ${story.error ? story.error.message : response.status}`;
    return;
  }
  const r = story.request;
  document.getElementById("story-id").textContent =
    `${requestId}: ${r.error || r.status}, ${r.latency_ms.toFixed(1)} ms, release ${r.release || "-"}, ${story.lines.length} log lines`;
  sources.replaceChildren(...story.sources.map((s) =>
    el("li", {}, `${s.service}: service logs ${s.service_logs}; container logs: ${s.container_logs}`)));
  body.replaceChildren(...story.lines.map((line) => {
    const f = line.fields || {};
    const bad = f.level === "error" || f.level === "warning" || (typeof f.status === "number" && f.status >= 500);
    const row = el("tr", { class: bad ? "error" : "" });
    const known = new Set(["ts", "level", "service", "instance", "release", "event", "status", "duration_ms", "request_id"]);
    const rest = line.fields
      ? Object.entries(f).filter(([k]) => !known.has(k)).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ")
      : line.text;
    row.append(el("td", {}, clockMs(line.t)), el("td", {}, f.service || line.service),
      el("td", {}, f.instance || ""), el("td", {}, f.event || ""), el("td", {}, f.status ?? ""),
      el("td", {}, f.duration_ms ?? ""), el("td", { class: "details" }, rest));
    return row;
  }));
}

// -- legend and controls ------------------------------------------------------------------------
function renderLegend() {
  const legend = document.getElementById("legend");
  const items = [["starting", "starting"], ["healthy", "healthy (running)"], ["draining", "draining (told to stop)"],
    ["shutdown", "shut down"], ["failed", "failed / rejected"], ["earlier", "before the console watched"]];
  legend.replaceChildren(...items.map(([phase, text]) => {
    const item = el("span");
    const swatch = svg("svg", { width: 12, height: 10 });
    swatch.appendChild(svg("rect", { class: `ph-${phase}`, width: 12, height: 10 }));
    item.append(swatch, document.createTextNode(text));
    return item;
  }));
}

function renderReleases() {
  // The colour of each release, as the requests and "answered by" rows use it.
  const holder = document.getElementById("releases");
  const names = [...releaseIndex.keys()].sort();
  if (holder.dataset.names === names.join(",")) return;
  holder.dataset.names = names.join(",");
  holder.replaceChildren(...names.map((release) => {
    const item = el("span");
    const swatch = svg("svg", { width: 12, height: 10 });
    swatch.appendChild(svg("rect", { class: releaseClass(release), width: 12, height: 10 }));
    item.append(swatch, document.createTextNode(`answers of release ${release}`));
    return item;
  }));
}

function setupWindow() {
  for (const button of document.querySelectorAll(".window button")) {
    button.addEventListener("click", () => {
      view.windowS = Number(button.dataset.window);
      for (const other of document.querySelectorAll(".window button")) other.classList.toggle("selected", other === button);
      queueRender();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  renderLegend();
  setupWindow();
  connect();
  setInterval(queueRender, 1000);  // the axis moves on even when nothing changes
  window.addEventListener("resize", queueRender);
});
