// "What does this consumer see": pick a plan (and an application, scopes);
// the admin API lists the backend's tools, resources and prompts and marks
// each as the access-control rules judge it for that consumer. Names and
// descriptions come from the MCP server: shown as text.

import { api } from "./api.js";
import { badge, clearFieldErrors, field, h, setNearestFieldError } from "./dom.js";
import { setTitle, showBanner } from "./shell.js";

const KINDS = [["tools", "Tools"], ["resources", "Resources"], ["resourceTemplates", "Resource templates"], ["prompts", "Prompts"]];

function itemsTable(key, label, items) {
  const section = h("section", { class: "pins-section", "aria-labelledby": `preview-${key}` });
  if (items === null || items === undefined) {
    section.append(h("h2", { id: `preview-${key}` }, label),
      h("p", { class: "muted" }, `The backend offers no ${label.toLowerCase()}.`));
    return section;
  }
  const allowed = items.filter((item) => item.allowed).length;
  section.append(h("h2", { id: `preview-${key}` }, `${label}: ${allowed} of ${items.length} visible`));
  if (!items.length) {
    section.append(h("p", { class: "muted" }, "None listed."));
    return section;
  }
  section.append(h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "visually-hidden" }, label),
    h("thead", {}, h("tr", {}, ["Name", "Title", "Description", "This consumer"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, items.map((item) => h("tr", { class: item.allowed ? "" : "hidden-item" },
      h("th", { scope: "row", class: "mono" }, item.name ?? "–"),
      h("td", {}, item.title || ""),
      h("td", {}, item.description || item.mimeType || ""),
      h("td", {}, item.allowed ? badge("Allowed", "ok") : badge("Hidden", "error"))))))));
  return section;
}

export async function renderPreview(root, params, id) {
  const [record, applications] = await Promise.all([api.get(id), api.applications()]);
  setTitle(`Consumer view of ${record.name}`);
  const plan = h("select", {}, record.plans.map((p) => h("option", { value: p.name, selected: params.get("plan") === p.name || null },
    `${p.name} (${p.security})`)));
  const application = h("select", {}, h("option", { value: "" }, "None (keyless, or any application)"),
    applications.map((a) => h("option", { value: a.id, selected: params.get("application") === a.id || null }, a.name)));
  const scopes = h("input", { type: "text", spellcheck: "false" });
  const show = h("button", { type: "submit", class: "button" }, "Show what this consumer sees");
  const form = h("form", { class: "card filters", "aria-labelledby": "preview-form-title", novalidate: true },
    h("h2", { id: "preview-form-title", class: "visually-hidden" }, "Consumer"),
    field({ id: "preview-plan", label: "Plan", input: plan, fieldName: "plan" }),
    field({ id: "preview-application", label: "Application", input: application, fieldName: "application" }),
    field({ id: "preview-scopes", label: "Token scopes", input: scopes, fieldName: "scopes", hint: "Comma-separated (token plans)" }),
    h("div", { class: "buttons" }, show));
  const results = h("div", { "aria-live": "polite" });
  root.append(h("div", { class: "page-head" },
    h("h1", {}, `What consumers of ${record.name} see`),
    h("div", { class: "actions" },
      h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(id)}` }, "Back to the API"),
      h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(id)}/subscriptions` }, "Subscriptions"))),
  h("p", { class: "muted" }, "The console lists the backend's tools, resources and prompts now, and judges each with the ",
    "access-control rules of the saved definition (the API's and the plan's): what Deploy makes live."),
  form, results);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    show.disabled = true;
    results.replaceChildren(h("p", { class: "muted" }, "Listing the backend…"));
    try {
      const body = { plan: plan.value, scopes: scopes.value.split(",").map((s) => s.trim()).filter(Boolean) };
      if (application.value) body.application = application.value;
      const seen = await api.preview(id, body);
      const who = `${seen.plan}${seen.applicationName ? `, ${seen.applicationName}` : ""}${seen.scopes.length ? `, scopes ${seen.scopes.join(" ")}` : ""}`;
      results.replaceChildren(
        h("p", { class: "summary-line", id: "preview-summary" }, seen.rules
          ? `${seen.rules} access-control rule${seen.rules === 1 ? "" : "s"} apply to ${who}.`
          : `No access-control rules: ${who} sees everything the backend offers.`,
        seen.dryRun ? h("strong", {}, " Dry run: the gateway lets everything through and only marks what it would hide.") : null),
        ...KINDS.map(([key, label]) => itemsTable(key, label, seen[key])));
    } catch (e) {
      results.replaceChildren();
      if (e.field) setNearestFieldError(form, e.field, e.message);
      showBanner(e.describe ? e.describe("Listing what the consumer sees") : String(e));
    } finally {
      show.disabled = false;
    }
  });
  return null;
}
