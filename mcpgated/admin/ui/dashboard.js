// Analytics > Dashboard: requests and errors over time, error rate, top
// methods and tools, latency percentiles, top clients. Charts are Chart.js
// (vendor/chart.umd.min.js, MIT); each chart also has its numbers as a table.

import { api, loadGateway } from "./api.js";
import { clear, field, fmtInt, fmtMs, fmtPercent, fmtTime, h } from "./dom.js";
import { apiOptions, noTraffic, RANGES } from "./logs.js";
import { clearBanner, hashFor, navigate, setTitle, showBanner } from "./shell.js";

const COLORS = { requests: "#0a53be", requestsFill: "rgba(10, 83, 190, 0.12)", errors: "#b3261e", ok: "#3f78c9", grid: "#dde3ea", text: "#3d4650" };
const REFRESH = [["2", "Every 2 s"], ["5", "Every 5 s"], ["15", "Every 15 s"], ["60", "Every minute"], ["off", "Off"]];
const TOP = 10;

function option(value, label, selected) {
  return h("option", { value, selected: selected || null }, label);
}

function tile(key, label) {
  const value = h("div", { class: "tile-value", id: `tile-${key}` }, "–");
  const box = h("div", { class: "tile", role: "group", "aria-labelledby": `tile-${key}-label`, dataset: { tile: key } },
    h("div", { class: "tile-label", id: `tile-${key}-label` }, label), value);
  return { box, value };
}

function card(title, id, ...children) {
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

function dataTable(caption, columns, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map(([label, numeric]) => h("th", { scope: "col", class: numeric ? "num" : null }, label)))),
    h("tbody", {}, rows.length
      ? rows.map((cells) => h("tr", {}, cells.map((cell, i) => (i === 0
        ? h("th", { scope: "row", class: "mono" }, cell)
        : h("td", { class: columns[i][1] ? "num" : null }, cell)))))
      : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "Nothing in this time range.")))));
}

export async function renderDashboard(root, params) {
  setTitle("Dashboard");
  const apiId = params.get("api") || "";
  const range = RANGES.some(([v]) => v === params.get("range") && v !== "all") ? params.get("range") : "3600";
  const every = REFRESH.some(([v]) => v === params.get("refresh")) ? params.get("refresh") : "5";
  const rangeLabel = RANGES.find(([v]) => v === range)[1].toLowerCase();
  const [records, info] = await Promise.all([api.list(), loadGateway()]);
  const chartLib = window.Chart;
  if (chartLib) {
    chartLib.defaults.color = COLORS.text;
    chartLib.defaults.font.family = window.getComputedStyle(document.body).fontFamily;
  }

  root.append(h("div", { class: "page-head" }, h("h1", {}, "Dashboard"),
    h("div", { class: "actions" }, h("a", { class: "button secondary", href: hashFor("logs", { api: apiId }) }, "Logs"))));

  // --- controls ---
  const apiSelect = h("select", {}, apiOptions(records, apiId, "All APIs"));
  const rangeSelect = h("select", {}, RANGES.filter(([v]) => v !== "all").map(([v, l]) => option(v, l, v === range)));
  const refreshSelect = h("select", {}, REFRESH.map(([v, l]) => option(v, l, v === every)));
  const status = h("span", { class: "status muted", id: "dashboard-status" }, "Loading…");
  const refreshNow = h("button", { type: "button", class: "button secondary small" }, "Refresh now");
  const go = () => navigate(hashFor("dashboard", { api: apiSelect.value, range: rangeSelect.value === "3600" ? "" : rangeSelect.value,
    refresh: refreshSelect.value === "5" ? "" : refreshSelect.value }));
  for (const select of [apiSelect, rangeSelect, refreshSelect]) select.addEventListener("change", go);
  root.append(h("div", { class: "toolbar card" },
    field({ id: "dash-api", label: "API", input: apiSelect }),
    field({ id: "dash-range", label: "Time range", input: rangeSelect }),
    field({ id: "dash-refresh", label: "Refresh", input: refreshSelect }),
    h("div", { class: "status" }, status, " ", refreshNow)));

  // --- tiles ---
  const tiles = {
    requests: tile("requests", "Requests"), notifications: tile("notifications", "Notifications"),
    errors: tile("errors", "Errors"), errorRate: tile("error-rate", "Error rate"),
    p50: tile("p50", "Latency p50"), p90: tile("p90", "Latency p90"), p99: tile("p99", "Latency p99"),
  };
  root.append(h("div", { class: "tiles", role: "region", "aria-label": `Totals, ${rangeLabel}` }, Object.values(tiles).map((t) => t.box)));

  const empty = h("div", { hidden: true });
  const dropped = h("p", { class: "banner info", hidden: true });
  root.append(empty, dropped);

  // --- charts ---
  const canvases = {
    timeline: h("canvas", { role: "img", id: "chart-timeline" }),
    methods: h("canvas", { role: "img", id: "chart-methods" }),
    tools: h("canvas", { role: "img", id: "chart-tools" }),
  };
  const tables = { timeline: h("div"), methods: h("div"), tools: h("div"), clients: h("div") };
  const details = (key) => h("details", { open: chartLib ? null : true }, h("summary", {}, "Show as a table"), tables[key]);
  const charts = h("div", { hidden: true },
    h("div", { class: "grid-2" },
      card("Requests and errors over time", "timeline-title", h("div", { class: "chart-box tall" }, canvases.timeline), details("timeline")),
      card("Top methods", "methods-title", h("div", { class: "chart-box tall" }, canvases.methods), details("methods"))),
    h("div", { class: "grid-2" },
      card("Top tools", "tools-title", h("div", { class: "chart-box" }, canvases.tools), details("tools")),
      card("Top clients", "clients-title", tables.clients)));
  root.append(charts);
  if (!chartLib) showBanner("The charting library (vendor/chart.umd.min.js) did not load: the dashboard shows its numbers as tables.");

  const instances = {};
  function draw(key, config) {
    if (!chartLib) return;
    const existing = instances[key];
    if (existing) {
      existing.data.labels = config.data.labels;
      config.data.datasets.forEach((dataset, i) => { existing.data.datasets[i].data = dataset.data; });
      existing.update("none");
    } else {
      instances[key] = new chartLib(canvases[key], config);
    }
  }

  const baseOptions = {
    animation: false, responsive: true, maintainAspectRatio: false,
    plugins: { legend: { labels: { color: COLORS.text, boxWidth: 14 } }, tooltip: { enabled: true } },
  };
  function barConfig(labels, ok, errors) {
    return {
      type: "bar",
      data: { labels, datasets: [
        { label: "Succeeded", data: ok, backgroundColor: COLORS.ok, stack: "calls" },
        { label: "Failed", data: errors, backgroundColor: COLORS.errors, stack: "calls" },
      ] },
      options: Object.assign({}, baseOptions, {
        indexAxis: "y",
        scales: {
          x: { stacked: true, beginAtZero: true, ticks: { precision: 0, color: COLORS.text }, grid: { color: COLORS.grid } },
          y: { stacked: true, ticks: { color: COLORS.text }, grid: { display: false } },
        },
      }),
    };
  }

  function update(summary) {
    const totals = summary.totals;
    const count = totals.requests + totals.notifications;
    tiles.requests.value.textContent = fmtInt(totals.requests);
    tiles.notifications.value.textContent = fmtInt(totals.notifications);
    tiles.errors.value.textContent = fmtInt(totals.errors);
    tiles.errorRate.value.textContent = fmtPercent(totals.errorRate);
    tiles.errors.box.classList.toggle("bad", totals.errors > 0);
    tiles.errorRate.box.classList.toggle("bad", totals.errors > 0);
    tiles.p50.value.textContent = fmtMs(summary.latencyMs.p50);
    tiles.p90.value.textContent = fmtMs(summary.latencyMs.p90);
    tiles.p99.value.textContent = fmtMs(summary.latencyMs.p99);
    dropped.hidden = !summary.droppedRecords;
    dropped.textContent = `${fmtInt(summary.droppedRecords)} exchange records were dropped since the daemon started (the analytics writer fell behind): the counts here are low.`;

    if (!count) {
      clear(empty).append(noTraffic(records, info, apiId));
      empty.hidden = false;
      charts.hidden = true;
      return;
    }
    clear(empty).hidden = true;
    charts.hidden = false;

    // requests and errors over time
    const points = summary.timeSeries.points;
    const withDay = Number(range) >= 86400;
    const labels = points.map((p) => fmtTime(p.time, withDay).replace(/:\d\d$/, summary.timeSeries.bucketSeconds < 60 ? "$&" : ""));
    draw("timeline", {
      type: "line",
      data: { labels, datasets: [
        { label: "Requests", data: points.map((p) => p.requests), borderColor: COLORS.requests, backgroundColor: COLORS.requestsFill, fill: true, tension: 0.2, pointRadius: 0, borderWidth: 2 },
        { label: "Errors", data: points.map((p) => p.errors), borderColor: COLORS.errors, backgroundColor: COLORS.errors, pointRadius: 0, borderWidth: 2 },
      ] },
      options: Object.assign({}, baseOptions, {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { color: COLORS.text, maxTicksLimit: 8, maxRotation: 0 }, grid: { color: COLORS.grid } },
          y: { beginAtZero: true, ticks: { precision: 0, color: COLORS.text }, grid: { color: COLORS.grid } },
        },
      }),
    });
    const busy = points.filter((p) => p.requests || p.notifications);
    canvases.timeline.setAttribute("aria-label", `Line chart: ${totals.requests} requests, ${totals.errors} errors, ${rangeLabel}, in ${summary.timeSeries.bucketSeconds}-second buckets.`);
    clear(tables.timeline).append(dataTable("Requests and errors by time", [["Time"], ["Requests", true], ["Notifications", true], ["Errors", true]],
      busy.map((p) => [fmtTime(p.time, withDay), fmtInt(p.requests), fmtInt(p.notifications), fmtInt(p.errors)])));

    // top methods
    const methods = summary.byMethod.slice(0, TOP);
    draw("methods", barConfig(methods.map((m) => m.method), methods.map((m) => m.count - m.errors), methods.map((m) => m.errors)));
    canvases.methods.setAttribute("aria-label", `Bar chart of the top methods: ${methods.map((m) => `${m.method} ${m.count}`).join(", ")}.`);
    clear(tables.methods).append(dataTable("Calls by method", [["Method"], ["Calls", true], ["Errors", true], ["Error rate", true], ["p50", true], ["p90", true], ["p99", true]],
      summary.byMethod.map((m) => [m.method, fmtInt(m.count), fmtInt(m.errors), fmtPercent(m.errorRate),
        fmtMs(m.latencyMs.p50), fmtMs(m.latencyMs.p90), fmtMs(m.latencyMs.p99)])));

    // top tools
    const tools = summary.byTarget.filter((t) => t.method === "tools/call");
    const topTools = tools.slice(0, TOP);
    draw("tools", barConfig(topTools.map((t) => t.name), topTools.map((t) => t.count - t.errors), topTools.map((t) => t.errors)));
    canvases.tools.setAttribute("aria-label", tools.length
      ? `Bar chart of the top tools: ${topTools.map((t) => `${t.name} ${t.count}`).join(", ")}.` : "No tool calls in this time range.");
    clear(tables.tools).append(dataTable("Calls by tool", [["Tool"], ["Calls", true], ["Errors", true], ["p50", true], ["p90", true], ["p99", true]],
      tools.map((t) => [t.name, fmtInt(t.count), fmtInt(t.errors), fmtMs(t.latencyMs.p50), fmtMs(t.latencyMs.p90), fmtMs(t.latencyMs.p99)])));

    // top clients: by application (when the plan knows it), then client name and address
    clear(tables.clients).append(dataTable("Top clients", [["Application"], ["Client"], ["Address"], ["Requests", true], ["Share", true]],
      summary.topClients.map((c) => [c.application || "–", c.clientName || "–", c.address || "–", fmtInt(c.count),
        fmtPercent(totals.requests ? c.count / totals.requests : 0)])));
  }

  let inFlight = false;
  let failed = false;
  async function refresh() {
    if (inFlight || document.hidden) return;
    inFlight = true;
    try {
      const summary = await api.analytics(apiId, { last: range });
      update(summary);
      status.textContent = `Updated ${fmtTime(Date.now() / 1000)}${every === "off" ? "" : ` · refreshes every ${every === "60" ? "minute" : `${every} s`}`}`;
      if (failed) clearBanner();
      failed = false;
    } catch (e) {
      if (e.status === 401) return;
      failed = true;
      status.textContent = "Not up to date";
      showBanner(e.describe("Refreshing the dashboard"));
    } finally {
      inFlight = false;
    }
  }
  refreshNow.addEventListener("click", refresh);
  await refresh();
  const timer = every === "off" ? null : window.setInterval(refresh, Number(every) * 1000);
  return () => {
    if (timer) window.clearInterval(timer);
    for (const chart of Object.values(instances)) chart.destroy();
  };
}
