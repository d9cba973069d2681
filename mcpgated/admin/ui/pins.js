// Tool-definition pinning of one API: what awaits a decision (with the diff
// from the pinned definition), approve and reject, every pin, and the drift
// events with their diffs. Definitions come from MCP servers: shown as text.

import { call } from "./api.js";
import { badge, clear, fmtDate, h } from "./dom.js";
import { setTitle, showBanner } from "./shell.js";

const KINDS = { tool: "Tool", prompt: "Prompt", resourceTemplate: "Resource template" };
const EVENTS = { changed: "Changed", new: "New", removed: "Removed" };

function pinsPath(id) {
  return `apis/${encodeURIComponent(id)}/pins`;
}

function short(fingerprint) {
  return fingerprint ? fingerprint.slice(7, 19) : "–";
}

function when(iso) {
  return fmtDate(iso);
}

/** A unified diff, one line per row, additions and removals marked. */
export function diffView(text, label) {
  const pre = h("pre", { class: "diff", "aria-label": label });
  for (const line of (text || "").split("\n")) {
    let kind = "";
    if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    else if (line.startsWith("@@")) kind = "hunk";
    pre.append(h("span", { class: `diff-line ${kind}`.trim() }, line || " "));
  }
  return pre;
}

function statusBadges(pin) {
  const out = [];
  if (pin.blocked) out.push(badge("Blocked", "error", "Filtered out of list results and its calls refused"));
  if (pin.status === "pending") out.push(badge("Awaiting approval", "warn"));
  else if (pin.status === "rejected") out.push(badge("Rejected", "error"));
  else out.push(badge("Pinned", "ok"));
  if (!pin.present) out.push(badge("Not listed", "", "The last complete list did not have it"));
  return out;
}

export async function renderPins(root, params, id) {
  let record;
  try {
    record = await call("GET", `apis/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 401) throw e;
    setTitle("API not found");
    root.append(h("h1", {}, "API not found"),
      h("p", {}, e.status === 404 ? "No API has this id. " : e.describe(), " ",
        h("a", { href: "#/apis" }, "Back to the APIs")));
    return null;
  }

  async function load() {
    const [pins, events] = await Promise.all([
      call("GET", pinsPath(id)),
      call("GET", `${pinsPath(id)}/events?limit=100`),
    ]);
    draw(pins, events.data);
  }

  async function decide(pin, verb, button) {
    button.disabled = true;
    const what = `${KINDS[pin.kind] || pin.kind} ${pin.name}`;
    try {
      await call("POST", `${pinsPath(id)}/${encodeURIComponent(pin.id)}/_${verb}`,
        { fingerprint: pin.pending.fingerprint });
      await load();
      showBanner(verb === "approve"
        ? `Approved: ${what} is pinned to its new definition and served again.`
        : `Rejected: ${what} keeps its pinned definition${pin.blocked ? " and stays blocked" : ""}.`,
      "success");
    } catch (e) {
      button.disabled = false;
      if (e.status === 401) return;
      showBanner(e.describe(verb === "approve" ? "Approve" : "Reject"));
    }
  }

  function awaiting(pin) {
    const what = `${KINDS[pin.kind] || pin.kind} ${pin.name}`;
    const approve = h("button", { type: "button", class: "button" }, `Approve ${pin.name}`);
    const reject = h("button", { type: "button", class: "button secondary" }, `Reject ${pin.name}`);
    approve.addEventListener("click", () => decide(pin, "approve", approve));
    reject.addEventListener("click", () => decide(pin, "reject", reject));
    return h("section", { class: "card pin", "aria-label": what },
      h("h3", {}, what, " ", statusBadges(pin)),
      h("p", { class: "muted" }, pin.fingerprint
        ? `Pinned ${short(pin.fingerprint)} (${pin.approvedBy || "–"}, ${when(pin.approvedAt)}); the server now lists ${short(pin.pending.fingerprint)}, first seen ${when(pin.pending.seenAt)}.`
        : `New: never approved; the server lists ${short(pin.pending.fingerprint)}, first seen ${when(pin.pending.seenAt)}.`),
      diffView(pin.pending.diff, `Changes to ${what}`),
      h("div", { class: "row" }, approve, pin.status === "pending" ? reject : null));
  }

  function draw(body, events) {
    clear(root);
    setTitle(`Pins · ${record.name}`);
    const settings = body.pinning;
    root.append(h("div", { class: "page-head" },
      h("h1", {}, `Pins of ${record.name}`),
      h("div", { class: "actions" },
        h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(id)}` }, "Back to the API"))));
    root.append(h("p", { class: "muted", id: "pinning-mode" }, settings.mode === "off"
      ? "Pinning is off for this API: set \"pinning\": {\"mode\": \"warn\"} or \"block\" on its definition and deploy."
      : `Pinning: ${settings.mode} mode, ${settings.approval === "required" ? "every new definition needs an approval" : "the first definition seen is pinned"}. ${settings.mode === "block" ? "Changed or unapproved items are hidden from clients and their calls refused until approved." : "Traffic is unchanged; changes are reported."}`));

    const pins = body.data;
    const open = pins.filter((pin) => pin.pending);
    const decisions = h("section", { class: "pins-section", "aria-labelledby": "awaiting-title" },
      h("h2", { id: "awaiting-title" }, "Awaiting a decision"));
    if (open.length) for (const pin of open) decisions.append(awaiting(pin));
    else decisions.append(h("p", { class: "empty" }, "Nothing awaits a decision: every listed definition is the pinned one."));
    root.append(decisions);

    const table = h("table", {},
      h("caption", { class: "visually-hidden" }, "Pins"),
      h("thead", {}, h("tr", {}, ["Kind", "Name", "Status", "Fingerprint", "Pinned by", "Pinned at"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, pins.map((pin) => h("tr", {},
        h("td", {}, KINDS[pin.kind] || pin.kind),
        h("th", { scope: "row", class: "mono" }, pin.name),
        h("td", {}, statusBadges(pin)),
        h("td", { class: "mono", title: pin.fingerprint || "" }, short(pin.fingerprint)),
        h("td", {}, pin.approvedBy || "–"),
        h("td", {}, when(pin.approvedAt))))));
    root.append(h("section", { class: "pins-section", "aria-labelledby": "pins-title" },
      h("h2", { id: "pins-title" }, "Pinned definitions"),
      pins.length ? h("div", { class: "table-wrap" }, table)
        : h("p", { class: "empty" }, "No pins yet: they are taken from the first list results that pass through the gateway.")));

    const list = h("section", { class: "pins-section", "aria-labelledby": "events-title" },
      h("h2", { id: "events-title" }, "Drift events"));
    if (!events.length) list.append(h("p", { class: "empty" }, "No drift events."));
    for (const event of events) {
      const what = `${KINDS[event.kind] || event.kind} ${event.name}`;
      list.append(h("article", { class: "event", "aria-label": `${EVENTS[event.type] || event.type}: ${what}` },
        h("h4", {}, `${EVENTS[event.type] || event.type}: ${what}`, " ",
          h("span", { class: "muted" }, `${when(event.at)} · ${short(event.oldFingerprint)} → ${short(event.newFingerprint)}${event.session ? ` · session ${event.session}` : ""}`)),
        h("details", {}, h("summary", {}, "Diff"), diffView(event.diff, `Diff of ${what}`))));
    }
    root.append(list);
  }

  await load();
  return null;
}
