// Analytics > Logs: the exchange log with the admin API's filters, cursor
// pagination, and one exchange in detail.

import { api, clientUrl, loadGateway } from "./api.js";
import { badge, clear, field, fmtBytes, fmtInt, fmtMs, fmtTime, h, isoTime } from "./dom.js";
import { hashFor, navigate, setTitle } from "./shell.js";

export const RANGES = [
  ["300", "Last 5 minutes"], ["900", "Last 15 minutes"], ["3600", "Last hour"], ["21600", "Last 6 hours"],
  ["86400", "Last 24 hours"], ["604800", "Last 7 days"], ["all", "All kept records"],
];
const OUTCOMES = [
  ["", "Any outcome"], ["errors", "Any failure"], ["result", "result"], ["error", "error (JSON-RPC)"],
  ["tool_error", "tool_error"], ["http_error", "http_error"], ["upstream_error", "upstream_error"],
  ["no_response", "no_response"], ["accepted", "accepted (notification)"], ["client_closed", "client_closed"],
  ["unparsed", "unparsed"], ["denied", "denied (access control)"], ["rate_limited", "rate_limited"],
  ["unauthorized", "unauthorized"], ["forbidden", "forbidden"], ["bad_credentials", "bad_credentials"],
  ["bad_request", "bad_request"],
];
const METHODS = ["initialize", "notifications/initialized", "ping", "tools/list", "tools/call", "resources/list",
  "resources/read", "resources/templates/list", "resources/subscribe", "prompts/list", "prompts/get",
  "completion/complete", "logging/setLevel", "notifications/cancelled"];
const TEXT_FILTERS = [["method", "Method"], ["tool", "Tool, resource or prompt"], ["client", "Client"], ["session", "Session"], ["node", "Node"], ["q", "Text"]];
// as mcpgated.analytics.store.ERROR_OUTCOMES: what "Any failure" and the error rate count
const ERROR_OUTCOMES = new Set(["error", "tool_error", "http_error", "upstream_error", "denied", "rate_limited",
  "unauthorized", "forbidden", "bad_request", "bad_credentials"]);
// Shown as [REDACTED] whatever the server stored (it redacts most of these
// too). A session id lets whoever holds it act in the session: the records
// name sessions by a hash, and so does this page.
const SECRET_HEADERS = new Set(["authorization", "proxy-authorization", "cookie", "set-cookie", "dpop", "x-api-key",
  "x-gravitee-api-key", "api-key", "mcp-session-id"]);
const SECRET_KEYS = new Set(["access_token", "refresh_token", "id_token", "client_secret", "password", "token", "api_key", "apikey", "authorization"]);

let lastLogsHash = "#/logs";
const WATCH_MS = 3000;

export function outcomeBadge(outcome) {
  if (!outcome) return badge("–");
  return badge(outcome, outcome === "result" || outcome === "accepted" ? "ok" : ERROR_OUTCOMES.has(outcome) ? "error" : "");
}

function option(value, label, selected) {
  return h("option", { value, selected: selected || null }, label);
}

export function apiOptions(records, selected, allLabel) {
  return [option("", allLabel, !selected), ...records.map((r) => option(r.id, `${r.name} ${r.version} (${r.contextPath})`, r.id === selected))];
}

export async function renderLogs(root, params) {
  setTitle("Logs");
  lastLogsHash = window.location.hash || "#/logs";
  const apiId = params.get("api") || "";
  const range = params.get("range") || "86400";
  const limit = params.get("limit") || "50";
  const cursor = params.get("cursor") || "";
  const trail = params.get("trail") ? params.get("trail").split(",") : [];
  const filters = Object.fromEntries(TEXT_FILTERS.map(([key]) => [key, params.get(key) || ""]));
  filters.outcome = params.get("outcome") || "";

  root.append(h("div", { class: "page-head" }, h("h1", {}, "Logs"),
    h("div", { class: "actions" }, h("a", { class: "button secondary", href: "#/dashboard" + (apiId ? `?api=${encodeURIComponent(apiId)}` : "") }, "Dashboard"))));
  const [records, info] = await Promise.all([api.list(), loadGateway()]);

  // --- filters ---
  const apiSelect = h("select", { name: "api" }, apiOptions(records, apiId, "All APIs"));
  const rangeSelect = h("select", { name: "range" }, RANGES.map(([v, l]) => option(v, l, v === range)));
  const outcomeSelect = h("select", { name: "outcome" }, OUTCOMES.map(([v, l]) => option(v, l, v === filters.outcome)));
  const limitSelect = h("select", { name: "limit" }, ["5", "10", "25", "50", "100", "200"].map((v) => option(v, v, v === limit)));
  const texts = Object.fromEntries(TEXT_FILTERS.map(([key]) => [key, h("input", {
    type: "search", name: key, value: filters[key], spellcheck: "false", list: key === "method" ? "method-list" : null,
  })]));
  const form = h("form", { class: "card filters", role: "search", "aria-label": "Filter the exchanges" },
    field({ id: "filter-api", label: "API", input: apiSelect }),
    field({ id: "filter-range", label: "Time range", input: rangeSelect }),
    TEXT_FILTERS.slice(0, 2).map(([key, label]) => field({ id: `filter-${key}`, label, input: texts[key] })),
    field({ id: "filter-outcome", label: "Outcome", input: outcomeSelect }),
    TEXT_FILTERS.slice(2).map(([key, label]) => field({ id: `filter-${key}`, label, input: texts[key] })),
    field({ id: "filter-limit", label: "Rows per page", input: limitSelect }),
    h("div", { class: "buttons" },
      h("button", { type: "submit", class: "button" }, "Apply filters"),
      h("a", { class: "button secondary", href: "#/logs" }, "Reset")),
    h("datalist", { id: "method-list" }, METHODS.map((m) => h("option", { value: m }))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = { api: apiSelect.value, range: rangeSelect.value === "86400" ? "" : rangeSelect.value,
      outcome: outcomeSelect.value, limit: limitSelect.value === "50" ? "" : limitSelect.value };
    for (const [key] of TEXT_FILTERS) next[key] = texts[key].value.trim();
    navigate(hashFor("logs", next));
  });
  root.append(form);

  // --- the page of records ---
  const query = { limit, cursor, outcome: filters.outcome };
  for (const [key] of TEXT_FILTERS) query[key] = filters[key];
  if (range !== "all") query.last = range;
  const byId = new Map(records.map((r) => [r.id, r]));
  const results = h("section", { "aria-labelledby": "results-title" });
  root.append(results);
  const filtered = TEXT_FILTERS.some(([key]) => filters[key]) || filters.outcome;
  const pageNumber = trail.length + 1;
  const base = Object.fromEntries([...params.entries()]);
  const newerNotice = h("p", { class: "row", role: "status", hidden: true });
  let shown = await api.logs(apiId, query);
  await show(shown);

  async function show(page) {
    clear(results);
    results.append(h("h2", { id: "results-title" }, page.data.length
      ? `Exchanges ${fmtInt((pageNumber - 1) * Number(limit) + 1)}–${fmtInt((pageNumber - 1) * Number(limit) + page.data.length)}, newest first`
      : "Exchanges"));
    if (!page.data.length) {
      if (filtered || cursor) {
        results.append(h("div", { class: "empty", role: "status" }, h("p", {}, h("strong", {}, "No exchanges match these filters.")),
          h("p", {}, cursor ? "" : "New exchanges that match appear here by themselves. ", h("a", { href: "#/logs" }, "Reset the filters"))));
      } else {
        const any = await api.logs(apiId, { limit: 1 });
        results.append(any.data.length
          ? h("div", { class: "empty", role: "status" }, h("p", {}, h("strong", {}, `No exchanges in this time range (${RANGES.find(([v]) => v === range)?.[1].toLowerCase() || range}).`)),
            h("p", {}, "Pick a longer time range to see older records."))
          : noTraffic(records, info, apiId));
      }
      return;
    }
    const rows = page.data.map((record) => {
      const apiRecord = byId.get(record.apiId);
      const detail = `#/logs/${encodeURIComponent(record.apiId)}/${encodeURIComponent(record.id)}`;
      const who = record.clientName ? `${record.clientName}${record.clientVersion ? ` ${record.clientVersion}` : ""}` : (record.client || "–");
      return h("tr", { dataset: { logId: record.id } },
        h("td", {}, h("a", { href: detail, title: isoTime(record.time), "aria-label": `Exchange ${record.id} at ${fmtTime(record.time)}: details` }, fmtTime(record.time))),
        h("td", {}, apiRecord ? apiRecord.name : record.apiName || record.apiId),
        h("td", { class: "mono" }, record.method, record.kind === "notification" ? h("span", { class: "muted" }, " (notification)") : null),
        h("td", { class: "mono" }, record.target || "–"),
        h("td", {}, outcomeBadge(record.outcome), record.errorMessage ? h("div", { class: "muted" }, record.errorMessage) : null),
        h("td", { class: "num" }, record.httpStatus ?? "–"),
        h("td", { class: "num" }, fmtMs(record.latencyMs)),
        h("td", { title: record.client || null }, who),
        h("td", { class: "mono" }, record.session
          ? h("a", { href: hashFor("logs", Object.assign({}, base, { session: record.session, cursor: "", trail: "" })),
            title: `Only this session (${record.session})`, "aria-label": `Only session ${record.session}` }, record.session.slice(0, 8))
          : "–"),
        h("td", {}, record.node
          ? h("a", { href: hashFor("logs", Object.assign({}, base, { node: record.node, cursor: "", trail: "" })),
            title: `Only node ${record.node}`, "aria-label": `Only node ${record.node}` }, record.node)
          : "–"));
    });
    results.append(newerNotice, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Time", "API", "Method", "Tool / resource", "Outcome", "HTTP", "Latency", "Client", "Session", "Node"]
        .map((label) => h("th", { scope: "col", class: ["HTTP", "Latency"].includes(label) ? "num" : null }, label)))),
      h("tbody", {}, rows))));

    // --- pages: nextCursor goes back in time; the trail remembers the way forward ---
    const newer = trail.length
      ? h("a", { class: "button secondary", href: hashFor("logs", Object.assign({}, base, { cursor: trail[trail.length - 1] === "-" ? "" : trail[trail.length - 1], trail: trail.slice(0, -1).join(",") })) }, "← Newer")
      : null;
    const older = page.nextCursor
      ? h("a", { class: "button secondary", href: hashFor("logs", Object.assign({}, base, { cursor: page.nextCursor, trail: [...trail, cursor || "-"].join(",") })) }, "Older →")
      : null;
    results.append(h("nav", { class: "pager", "aria-label": "Pages" }, newer, h("span", { class: "muted" }, `Page ${pageNumber}`), older));
  }

  // The first page keeps watch: an empty page fills by itself; over rows
  // already shown (which may have focus), newer exchanges are offered.
  if (cursor) return null;
  let busy = false;
  async function watch() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const latest = await api.logs(apiId, query);
      const top = shown.data.length ? shown.data[0].id : 0;
      const fresh = latest.data.filter((r) => r.id > top).length;
      if (!shown.data.length && fresh) {
        shown = latest;
        await show(shown);
      } else if (fresh) {
        const showThem = h("button", { type: "button", class: "button secondary small" }, "Show them");
        showThem.addEventListener("click", async () => {
          shown = latest;
          newerNotice.hidden = true;
          await show(shown);
          results.querySelector("h2").setAttribute("tabindex", "-1");
          results.querySelector("h2").focus();
        });
        clear(newerNotice).append(h("span", {}, `${fresh >= Number(limit) ? `${fresh} or more` : fresh} newer exchange${fresh === 1 ? "" : "s"}.`), showThem);
        newerNotice.hidden = false;
      }
    } catch (e) {
      // the next round tries again; a 401 has already gone back to sign-in
    } finally {
      busy = false;
    }
  }
  const timer = window.setInterval(watch, WATCH_MS);
  return () => window.clearInterval(timer);
}

export function noTraffic(records, info, apiId) {
  const started = records.filter((r) => r.state === "STARTED" && (!apiId || r.id === apiId));
  if (!records.length) {
    return h("div", { class: "empty", role: "status" }, h("p", {}, h("strong", {}, "No APIs yet.")),
      h("p", {}, h("a", { href: "#/apis/new" }, "Create an API"), " to publish an MCP server through the gateway."));
  }
  if (!started.length) {
    return h("div", { class: "empty", role: "status" }, h("p", {}, h("strong", {}, "No traffic yet: no API is started.")),
      h("p", {}, "Deploy or start an API on its ", h("a", { href: "#/apis" }, "API page"), ", then point an MCP client at it."));
  }
  return h("div", { class: "empty", role: "status" },
    h("p", {}, h("strong", {}, "No traffic yet: point an MCP client at "),
      started.map((r, i) => [i ? " or " : "", h("code", {}, clientUrl(r, info))])),
    h("p", {}, "Exchanges appear here within a second of being made."));
}

// --- one exchange ---------------------------------------------------------------------------

function redacted(value) {
  if (Array.isArray(value)) return value.map(redacted);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, SECRET_KEYS.has(key.toLowerCase()) ? "[REDACTED]" : redacted(v)]));
  }
  return value;
}

function json(value) {
  return h("pre", { class: "json", tabindex: "0" }, typeof value === "string" ? value : JSON.stringify(redacted(value), null, 2));
}

function headersTable(headers, caption) {
  const rows = [];
  for (const [name, values] of Object.entries(headers)) {
    for (const value of [].concat(values)) {
      rows.push(h("tr", {}, h("th", { scope: "row", class: "mono" }, name),
        h("td", { class: "mono" }, SECRET_HEADERS.has(name.toLowerCase()) ? "[REDACTED]" : value)));
    }
  }
  return h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "visually-hidden" }, caption), h("tbody", {}, rows)));
}

function describeMessage(message) {
  if (!message || typeof message !== "object") return "message";
  if (message.method) return `${message.method}${"id" in message ? ` (request ${JSON.stringify(message.id)})` : ""}`;
  if ("error" in message) return `error response to ${JSON.stringify(message.id)}`;
  if ("result" in message) return `result for ${JSON.stringify(message.id)}`;
  return "message";
}

export async function renderLogDetail(root, params, apiId, logId) {
  setTitle(`Exchange ${logId}`);
  const back = h("a", { href: lastLogsHash }, "← Back to the logs");
  root.append(h("p", {}, back));
  let entry;
  try {
    entry = await api.logEntry(apiId, logId);
  } catch (e) {
    if (e.status !== 404) throw e;
    root.append(h("h1", {}, "Exchange not found"), h("p", {}, `${e.message}. It may have expired (records are kept for a limited time).`));
    return null;
  }
  root.append(h("h1", {}, entry.method, entry.target ? ` ${entry.target}` : ""));
  const rows = [
    ["Time", `${fmtTime(entry.time, true)} (${isoTime(entry.time)})`],
    ["API", h("a", { href: `#/apis/${encodeURIComponent(entry.apiId)}` }, entry.apiName || entry.apiId)],
    ["Plan", entry.plan], ["Kind", entry.kind], ["JSON-RPC id", entry.jsonrpcId],
    ["Outcome", outcomeBadge(entry.outcome)], ["Error code", entry.errorCode], ["Error message", entry.errorMessage],
    ["HTTP status", entry.httpStatus], ["Latency", fmtMs(entry.latencyMs)], ["Time to first byte", fmtMs(entry.ttfbMs)],
    ["Bytes in / out", `${fmtBytes(entry.bytesIn)} / ${fmtBytes(entry.bytesOut)}`],
    ["Transport", entry.transport === "sse" ? "SSE stream" : entry.transport],
    ["Notifications on the stream", entry.notifications],
    ["Client", [entry.clientName, entry.clientVersion].filter(Boolean).join(" ") || null],
    ["Client address", entry.client], ["Protocol version", entry.protocolVersion],
    ["Backend protocol version (bridged)", entry.backendVersion],
    ["Session", entry.session ? h("a", { href: hashFor("logs", { session: entry.session }) }, entry.session) : null],
    ["Gateway node", entry.node ? h("a", { href: hashFor("logs", { node: entry.node }) }, entry.node) : null],
  ];
  root.append(h("section", { class: "card", "aria-label": "Exchange" }, h("dl", { class: "summary" },
    rows.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))));

  const captured = entry.requestHeaders || entry.responseHeaders || entry.requestPayload || entry.responsePayload;
  if (!captured) {
    root.append(h("div", { class: "empty", role: "status" },
      h("p", {}, h("strong", {}, "Headers and messages were not captured for this exchange.")),
      h("p", {}, "The API's exchange log kept metadata only. To record them for new exchanges, set Exchange log › Capture to ",
        "“Headers and messages” on the ", h("a", { href: `#/apis/${encodeURIComponent(entry.apiId)}` }, "API page"),
        " (secrets are always redacted).")));
    return null;
  }
  if (entry.truncated) {
    root.append(h("p", { class: "banner info" }, "Part of this exchange was over the capture limit (maxPayloadBytes): the cut payload is shown as text."));
  }
  const request = h("section", { class: "card", "aria-labelledby": "request-title" }, h("h2", { id: "request-title" }, "Request"));
  if (entry.requestHeaders) request.append(h("h3", {}, "Headers"), headersTable(entry.requestHeaders, "Request headers"));
  request.append(h("h3", {}, "Message"), entry.requestPayload === null || entry.requestPayload === undefined
    ? h("p", { class: "muted" }, "Not captured (the API captures headers only).") : json(entry.requestPayload));

  const response = h("section", { class: "card", "aria-labelledby": "response-title" }, h("h2", { id: "response-title" }, "Response"));
  if (entry.responseHeaders) response.append(h("h3", {}, "Headers"), headersTable(entry.responseHeaders, "Response headers"));
  const payload = entry.responsePayload;
  if (payload === null || payload === undefined) {
    response.append(h("h3", {}, "Messages"), h("p", { class: "muted" },
      entry.requestPayload ? "No response message was recorded." : "Not captured (the API captures headers only)."));
  } else if (typeof payload === "string") {
    response.append(h("h3", {}, "Messages (cut at the capture limit)"), json(payload));
  } else {
    const messages = Array.isArray(payload) ? payload : [payload];
    const sse = entry.transport === "sse";
    response.append(h("h3", {}, sse ? `SSE events (${messages.length})` : messages.length > 1 ? `Messages (${messages.length})` : "Message"));
    messages.forEach((message, i) => {
      response.append(h("div", { class: "event", dataset: { event: i + 1 } },
        h("h4", {}, sse ? `Event ${i + 1} of ${messages.length}: ${describeMessage(message)}` : describeMessage(message)),
        json(message)));
    });
  }
  root.append(h("div", { class: "grid-2" }, request, response));
  return null;
}
