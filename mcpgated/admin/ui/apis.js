// APIs: the list and the API page (edit, deploy, stop, start, delete).

import { api, clientUrl, loadGateway } from "./api.js";
import { badge, clear, clearFieldErrors, field, fmtDate, fmtInt, h, setNearestFieldError } from "./dom.js";
import { LocalFieldError, aclEditor, apiSecurity, planSettings, rateLimitEditor } from "./security.js";
import { protocolEditor, summary as protocolSummary } from "./protocol.js";
import { carry, hashFor, navigate, setTitle, showBanner } from "./shell.js";

const RATE_WINDOW = 60; // seconds: the "live" request rate is over the last minute
const RATE_REFRESH = 10000;
// What the API adds to a definition; everything else is the definition, sent
// back on Save as it came (fields this console does not edit survive).
const READ_ONLY = new Set(["id", "state", "createdAt", "updatedAt", "deployedAt", "deploymentState", "needsRedeploy", "deployed"]);

export function stateBadges(record) {
  const badges = [record.state === "STARTED" ? badge("Started", "ok") : badge("Stopped")];
  if (record.deploymentState === "NEVER_DEPLOYED") badges.push(badge("Never deployed", "warn"));
  if (record.needsRedeploy) {
    badges.push(badge("Deployed definition is behind", "warn",
      "The stored definition was edited after the last deploy: Deploy to make the edits live."));
  }
  return badges;
}

function plansText(record) {
  return record.plans.map((plan) => {
    const security = plan.security === "KEY_LESS" ? "keyless" : plan.security;
    const said = plan.name.toLowerCase().replace(/[^a-z]/g, "") === security.toLowerCase().replace(/[^a-z]/g, "");
    return `${plan.name}${said ? "" : ` (${security})`}${plan.status === "PUBLISHED" ? "" : `, ${plan.status.toLowerCase()}`}`;
  }).join("; ");
}

export async function renderApiList(root) {
  setTitle("APIs");
  root.append(h("div", { class: "page-head" },
    h("h1", {}, "APIs"),
    h("div", { class: "actions" }, h("a", { class: "button", href: "#/apis/new" }, "Create API"))));
  const [records, info] = await Promise.all([api.list(), loadGateway()]);
  if (!records.length) {
    root.append(h("div", { class: "empty" },
      h("p", {}, h("strong", {}, "No APIs yet.")),
      h("p", {}, "An API publishes one MCP server through the gateway at a context path of its own."),
      h("p", {}, h("a", { class: "button", href: "#/apis/new" }, "Create your first API"))));
    return null;
  }
  const rates = new Map();
  const rows = records.map((record) => {
    const rate = h("td", { class: "num", dataset: { rate: record.id } }, record.state === "STARTED" ? "…" : "–");
    rates.set(record.id, rate);
    return h("tr", { dataset: { apiId: record.id } },
      h("td", {}, h("a", { href: `#/apis/${encodeURIComponent(record.id)}` }, record.name)),
      h("td", {}, record.version),
      h("td", {}, h("code", {}, record.contextPath)),
      h("td", { class: "mono" }, record.backend),
      h("td", {}, plansText(record)),
      h("td", {}, h("span", { class: "row" }, stateBadges(record))),
      rate);
  });
  root.append(h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "visually-hidden" }, "APIs, with the requests each received in the last minute"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Version"),
      h("th", { scope: "col" }, "Context path"), h("th", { scope: "col" }, "Backend"),
      h("th", { scope: "col" }, "Plans"), h("th", { scope: "col" }, "State"),
      h("th", { scope: "col", class: "num" }, "Requests/min"))),
    h("tbody", {}, rows))));
  const started = records.filter((r) => r.state === "STARTED");
  if (started.length) {
    root.append(h("p", { class: "muted" }, "MCP clients connect to ",
      started.map((r, i) => [i ? ", " : "", h("code", {}, clientUrl(r, info))]), "."));
  }

  let busy = false;
  async function refreshRates() {
    if (busy) return;
    busy = true;
    try {
      await Promise.all(started.map(async (record) => {
        try {
          const summary = await api.analytics(record.id, { last: RATE_WINDOW });
          const count = summary.totals.requests + summary.totals.notifications;
          rates.get(record.id).textContent = `${fmtInt(count * 60 / RATE_WINDOW)}/min`;
        } catch (e) {
          rates.get(record.id).textContent = e.status === 404 ? "off" : "?";
          rates.get(record.id).title = e.describe ? e.describe() : String(e);
        }
      }));
    } finally {
      busy = false;
    }
  }
  refreshRates();
  const timer = window.setInterval(refreshRates, RATE_REFRESH);
  return () => window.clearInterval(timer);
}

// --- the API page ---------------------------------------------------------------------------

function definitionOf(record) {
  return Object.fromEntries(Object.entries(record).filter(([key]) => !READ_ONLY.has(key)));
}

/** The protocol settings the definition has; those deployed too when they differ. */
function protocolText(record) {
  const stored = protocolSummary(record.protocol);
  if (!record.deployed) return stored;
  const deployed = protocolSummary(record.deployed.protocol);
  return deployed === stored ? stored : `${stored} (deployed: ${deployed})`;
}

function option(value, label, selected, disabled) {
  return h("option", { value, selected: selected || null, disabled: disabled || null }, label);
}

export const SECURITY = [["KEY_LESS", "Keyless (open)"], ["API_KEY", "API key"], ["JWT", "JWT"], ["OAUTH2", "OAuth 2"]];

function securityOptions(current) {
  return SECURITY.map(([value, label]) => option(value, label, current === value));
}

function planEditor(plans) {
  const list = h("div", {});
  const rows = [];
  function add(plan) {
    const index = rows.length;
    const name = h("input", { type: "text", value: plan.name, required: true, maxlength: 100 });
    const security = h("select", {}, securityOptions(plan.security));
    const status = h("select", {}, ["PUBLISHED", "STAGING", "CLOSED"].map((s) => option(s, s[0] + s.slice(1).toLowerCase(), plan.status === s)));
    const remove = h("button", { type: "button", class: "button secondary small" }, `Remove plan ${index + 1}`);
    const settings = planSettings(plan, index, security);
    const limit = rateLimitEditor(plan.rateLimit, index);
    const acl = aclEditor(plan.acl, `plan-${index}-acl`, `plans[${index}].acl`, "Access control (this plan adds rules)");
    const box = h("fieldset", { class: "plan" }, h("legend", {}, `Plan ${index + 1}`),
      field({ id: `plan-${index}-name`, label: "Name", input: name, fieldName: `plans[${index}].name` }),
      field({ id: `plan-${index}-security`, label: "Security", input: security, fieldName: `plans[${index}].security`,
        hint: "The gateway refuses a plan type it cannot enforce rather than deploy it unenforced." }),
      field({ id: `plan-${index}-status`, label: "Status", input: status, fieldName: `plans[${index}].status` }),
      settings.element, limit.element, acl.element,
      remove);
    // other plan fields (added by newer gateways) go back as they came
    const row = { box, read: () => {
      const out = Object.assign({}, plan, { name: name.value.trim(), security: security.value, status: status.value,
        configuration: settings.read(), rateLimit: limit.read(), acl: acl.read() });
      for (const key of ["rateLimit", "acl"]) if (out[key] === null) delete out[key];
      return out;
    } };
    remove.addEventListener("click", () => {
      if (rows.filter((r) => r.box.isConnected).length <= 1) {
        showBanner("An API needs at least one plan: add another before removing this one.");
        return;
      }
      box.remove();
    });
    rows.push(row);
    list.append(box);
  }
  plans.forEach(add);
  const addButton = h("button", { type: "button", class: "button secondary small" }, "Add plan");
  addButton.addEventListener("click", () => add({ name: "", security: "KEY_LESS", status: "PUBLISHED" }));
  return {
    element: h("div", {}, list, addButton),
    read: () => rows.filter((r) => r.box.isConnected).map((r) => r.read()),
  };
}

export async function renderApiPage(root, params, id) {
  let record;
  try {
    record = await api.get(id);
  } catch (e) {
    setTitle("API not found");
    root.append(h("h1", {}, "API not found"),
      h("p", {}, e.status === 404 ? "No API has this id: it may have been deleted. " : e.describe(), " ",
        h("a", { href: "#/apis" }, "Back to the APIs")));
    return null;
  }
  const info = await loadGateway();

  function draw() {
    clear(root);
    setTitle(record.name);
    const live = record.state === "STARTED";
    const deployButton = h("button", { type: "button", class: record.needsRedeploy || !record.deployed ? "button" : "button secondary" }, "Deploy");
    const toggle = live
      ? h("button", { type: "button", class: "button secondary" }, "Stop")
      : h("button", { type: "button", class: "button secondary", disabled: !record.deployed || null,
        title: record.deployed ? null : "Deploy the API first" }, "Start");
    const deleteButton = h("button", { type: "button", class: "button danger" }, "Delete");
    root.append(h("div", { class: "page-head" },
      h("h1", {}, record.name, " ", h("span", { class: "muted" }, record.version)),
      h("span", { class: "row" }, stateBadges(record)),
      h("div", { class: "actions" },
        h("a", { class: "button secondary", href: hashFor("logs", { api: record.id }) }, "Logs"),
        h("a", { class: "button secondary", href: hashFor("dashboard", { api: record.id }) }, "Dashboard"),
        h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(record.id)}/pins` }, "Pins"),
        h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(record.id)}/subscriptions` }, "Subscriptions"),
        h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(record.id)}/preview` }, "Consumer view"),
        deployButton, toggle, deleteButton)));

    const status = h("dl", { class: "summary" },
      h("dt", {}, "State"), h("dd", {}, live ? "Started: the gateway serves it" : "Stopped: the gateway does not serve it"),
      h("dt", {}, "Deployment"), h("dd", {}, record.deployedAt
        ? `Deployed ${fmtDate(record.deployedAt)}${record.needsRedeploy ? " — the deployed definition is behind the edits below: Deploy to make them live" : ""}`
        : "Never deployed: Deploy makes it live"),
      h("dt", {}, "MCP clients connect to"), h("dd", {}, h("code", {}, clientUrl(record, info)),
        live ? null : h("span", { class: "muted" }, " (once started)")),
      h("dt", {}, "MCP versions"), h("dd", { id: "api-protocol-summary" }, protocolText(record)),
      h("dt", {}, "Id"), h("dd", { class: "mono" }, record.id));
    root.append(h("section", { class: "card", "aria-label": "Status" }, status));

    deployButton.addEventListener("click", () => act(deployButton, "deploy", "Deploy",
      (r) => `Deployed: ${r.name} ${r.version} is live at ${clientUrl(r, info)}.`));
    toggle.addEventListener("click", () => live
      ? act(toggle, "stop", "Stop", (r) => `Stopped: the gateway no longer serves ${r.deployed.contextPath}.`)
      : act(toggle, "start", "Start", (r) => `Started: ${r.name} is live again at ${clientUrl(r, info)}.`));
    deleteButton.addEventListener("click", () => confirmDelete(deleteButton));
    root.append(editForm());
  }

  async function act(button, verb, label, success) {
    button.disabled = true;
    try {
      record = await api.action(record.id, verb);
      draw();
      showBanner(success(record), "success");
      focusHeading();
    } catch (e) {
      button.disabled = false;
      showBanner(e.describe(label));
    }
  }

  function focusHeading() {
    const heading = root.querySelector("h1");
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }

  function confirmDelete(opener) {
    const live = record.state === "STARTED";
    const cancel = h("button", { type: "button", class: "button secondary", autofocus: true }, "Cancel");
    const confirm = h("button", { type: "button", class: "button danger" }, live ? "Stop and delete" : "Delete");
    const dialog = h("dialog", { "aria-labelledby": "delete-title", "aria-describedby": "delete-text" },
      h("h2", { id: "delete-title" }, `Delete the API “${record.name}”?`),
      h("p", { id: "delete-text" }, live
        ? `It is started: the console stops it first, so MCP clients of ${record.contextPath} lose it at once. `
        : "", "Its definition is removed for good; its exchange logs stay until they expire."),
      h("div", { class: "row" }, cancel, confirm));
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener.isConnected) opener.focus();
    });
    cancel.addEventListener("click", () => dialog.close());
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      try {
        if (record.state === "STARTED") record = await api.action(record.id, "stop");
        await api.remove(record.id);
      } catch (e) {
        dialog.close();
        draw();
        showBanner(e.describe("Delete"));
        return;
      }
      dialog.close();
      carry(`Deleted the API “${record.name}” (${record.contextPath}).`);
      navigate("#/apis");
    });
    dialog.showModal();
  }

  function editForm() {
    const name = h("input", { type: "text", value: record.name, required: true, maxlength: 100 });
    const version = h("input", { type: "text", value: record.version, required: true, maxlength: 50 });
    const description = h("textarea", { value: record.description || "", maxlength: 2000 });
    const contextPath = h("input", { type: "text", value: record.contextPath, required: true, spellcheck: "false" });
    const backend = h("input", { type: "url", value: record.backend, required: true, spellcheck: "false" });
    const logging = h("select", {}, [["on", "On: a record per call"], ["off", "Off: metrics and access log only"]]
      .map(([value, label]) => option(value, label, (record.analytics.logging !== false) === (value === "on"))));
    const capture = h("select", {}, [["off", "Off: metadata only"], ["headers", "Headers"], ["bodies", "Headers and messages"]]
      .map(([value, label]) => option(value, label, record.analytics.capture === value)));
    const maxPayload = h("input", { type: "number", min: 1, max: 1048576, value: record.analytics.maxPayloadBytes });
    const redact = h("input", { type: "text", value: record.analytics.redactFields.join(", "), spellcheck: "false" });
    const plans = planEditor(record.plans);
    const security = apiSecurity(record);
    const protocol = protocolEditor(record.protocol);
    const save = h("button", { type: "submit", class: "button" }, "Save");
    const form = h("form", { class: "card", "aria-labelledby": "edit-title", novalidate: true },
      h("h2", { id: "edit-title" }, "Definition"),
      h("p", { class: "muted" }, "Saving stores the definition; the gateway keeps serving the deployed one until you Deploy."),
      field({ id: "api-name", label: "Name", input: name, fieldName: "name" }),
      field({ id: "api-version", label: "Version", input: version, fieldName: "version" }),
      field({ id: "api-description", label: "Description", input: description, fieldName: "description" }),
      field({ id: "api-context-path", label: "Context path", input: contextPath, fieldName: "contextPath",
        hint: "Where clients reach the API on the gateway, e.g. /mcp-proxy" }),
      field({ id: "api-backend", label: "Backend URL", input: backend, fieldName: "backend",
        hint: "The MCP server's endpoint, e.g. http://localhost:3001/mcp" }),
      h("fieldset", {}, h("legend", {}, "Plans"), plans.element),
      h("fieldset", {}, h("legend", {}, "Security"), security.element),
      h("fieldset", {}, h("legend", {}, "Protocol versions"), protocol.element),
      h("fieldset", {}, h("legend", {}, "Exchange log"),
        field({ id: "api-logging", label: "Records", input: logging, fieldName: "analytics.logging",
          hint: "Off: no log entries or dashboard data for this API; Prometheus metrics stay." }),
        field({ id: "api-capture", label: "Capture", input: capture, fieldName: "analytics.capture",
          hint: "Secrets (Authorization, cookies, token and password fields) are always redacted." }),
        field({ id: "api-max-payload", label: "Largest payload kept (bytes)", input: maxPayload, fieldName: "analytics.maxPayloadBytes" }),
        field({ id: "api-redact", label: "Also redact these JSON keys", input: redact, fieldName: "analytics.redactFields",
          hint: "Comma-separated, e.g. message, email" })),
      save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      let body;
      try {
        body = Object.assign(definitionOf(record), security.read(), { protocol: protocol.read() }, {
          name: name.value, version: version.value, description: description.value,
          contextPath: contextPath.value.trim(), backend: backend.value.trim(), plans: plans.read(),
          analytics: Object.assign({}, record.analytics, {
            logging: logging.value === "on",
            capture: capture.value,
            maxPayloadBytes: Number(maxPayload.value),
            redactFields: redact.value.split(",").map((s) => s.trim()).filter(Boolean),
          }),
        });
      } catch (e) {
        if (!(e instanceof LocalFieldError)) throw e;
        const input = setNearestFieldError(form, e.field, e.message);
        if (input) input.focus();
        showBanner(`Not saved: ${e.message}`);
        return;
      }
      save.disabled = true;
      try {
        record = await api.update(record.id, body);
      } catch (e) {
        save.disabled = false;
        const input = e.field ? setNearestFieldError(form, e.field, e.message) : null;
        if (input) input.focus();
        showBanner(e.describe("Saving"));
        return;
      }
      draw();
      focusHeading();
      showBanner(record.needsRedeploy
        ? "Saved. The gateway still serves the deployed definition: Deploy to make the changes live."
        : "Saved.", "success");
    });
    return form;
  }

  draw();
  return null;
}
