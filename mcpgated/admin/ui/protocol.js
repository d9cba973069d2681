// An API's MCP protocol versions ("protocol" in its definition; README,
// "Protocol versions per API"): the editor on the API page, the read-only
// summary, and the one line that says what the gateway does with them.

import { h } from "./dom.js";
import { LocalFieldError } from "./security.js";
import * as validate from "./validate.js";

const MODERN = validate.MODERN_VERSIONS[0];
const isModern = (version) => version >= MODERN;

function words(versions) {
  if (versions.length < 2) return versions.join("");
  return `${versions.slice(0, -1).join(", ")} and ${versions[versions.length - 1]}`;
}

/** Whom the gateway bridges: "modern" (handshake clients to a 2026-07-28 backend), "classic" (the other way) or null. */
export function bridging(settings) {
  const backend = settings && settings.backendVersion;
  if (!backend) return null;
  const clients = settings.clientVersions;
  if (isModern(backend) && clients.some((v) => !isModern(v))) return "modern";
  if (!isModern(backend) && clients.some(isModern)) return "classic";
  return null;
}

/** What the gateway does with these settings (null: pass-through), in one sentence. */
export function explain(settings) {
  if (settings === null) {
    return "Every MCP version passes through: clients and the backend negotiate as they would without the gateway.";
  }
  const clients = settings.clientVersions;
  if (!clients.length) return "No client version is accepted: check at least one.";
  const backend = settings.backendVersion;
  const handshake = clients.filter((v) => !isModern(v));
  const modern = clients.filter(isModern);
  const refused = handshake.length
    ? "other versions are refused (an initialize proposing one is offered the newest listed version)"
    : "other versions are refused";
  switch (bridging(settings)) {
    case "modern":
      return `Handshake-era clients (${words(handshake)}) are bridged to the ${backend} backend: the gateway `
        + "answers their initialize from its server/discover and keeps their sessions"
        + `${modern.length ? `; ${words(modern)} clients pass through` : ""}; ${refused}.`;
    case "classic":
      return `${words(modern)} clients are bridged to the ${backend} backend: the gateway checks their requests `
        + `as a ${MODERN} server and keeps the backend sessions they need`
        + `${handshake.length ? `; ${words(handshake)} clients pass through` : ""}; ${refused}.`;
    default:
      return `No bridging: clients speaking ${words(clients)} pass through`
        + `${backend ? ` to the ${backend} backend` : ""}; ${refused}.`;
  }
}

/** The settings read-only, for the API's summary. */
export function summary(settings) {
  if (!settings) return "Every version passes through";
  const backend = settings.backendVersion || "what the client negotiates";
  const bridged = { modern: ": handshake-era clients bridged", classic: `: ${MODERN} clients bridged` }[bridging(settings)];
  return `Clients ${settings.clientVersions.join(", ")}; backend ${backend}${bridged || ""}`;
}

/** The "Protocol versions" section of the API editor: pass-through, or client versions and the backend's. */
export function protocolEditor(settings) {
  const current = settings || null;
  const errorId = "api-protocol-client-0-error";
  const radio = (id, label, checked) => {
    const input = h("input", { type: "radio", id, name: "api-protocol-mode", checked: checked || null });
    return { input, box: h("div", { class: "field check" }, h("label", { for: id }, input, " ", label)) };
  };
  const all = radio("api-protocol-all", "Pass every version through", current === null);
  const only = radio("api-protocol-only", "Accept only these client versions", current !== null);
  all.input.dataset.field = "protocol";
  all.input.setAttribute("aria-describedby", "api-protocol-all-error");

  const boxes = validate.PROTOCOL_VERSIONS.map((version, index) => {
    const input = h("input", { type: "checkbox", id: `api-protocol-client-${index}`, value: version,
      checked: (current && current.clientVersions.includes(version)) || null });
    input.setAttribute("aria-describedby", errorId);
    return input;
  });
  boxes[0].dataset.field = "protocol.clientVersions";
  const clients = h("fieldset", { class: "inline versions" }, h("legend", {}, "Client versions accepted"),
    boxes.map((input) => h("div", { class: "field check" }, h("label", { for: input.id }, input, " ", input.value,
      isModern(input.value) ? " (no handshake)" : ""))),
    h("span", { class: "field-error", id: errorId, dataset: { errorFor: "protocol.clientVersions" } }));

  const backend = h("select", { id: "api-protocol-backend", dataset: { field: "protocol.backendVersion" } },
    h("option", { value: "", selected: !(current && current.backendVersion) || null }, "What the client negotiates"),
    validate.PROTOCOL_VERSIONS.map((version) => h("option", { value: version,
      selected: (current && current.backendVersion === version) || null }, version)));
  backend.setAttribute("aria-describedby", "api-protocol-backend-hint api-protocol-backend-error");
  const backendField = h("div", { class: "field" },
    h("label", { for: backend.id }, "Backend speaks"), backend,
    h("span", { class: "hint", id: "api-protocol-backend-hint" },
      "A version of the other era than some client versions: the gateway bridges them."),
    h("span", { class: "field-error", id: "api-protocol-backend-error", dataset: { errorFor: "protocol.backendVersion" } }));

  const details = h("div", { class: "protocol-details" }, clients, backendField);
  const line = h("p", { class: "protocol-explain", id: "api-protocol-explain", "aria-live": "polite" });

  function chosen() {
    if (all.input.checked) return null;
    const checked = validate.PROTOCOL_VERSIONS.filter((_, index) => boxes[index].checked);
    // versions kept in the order they were stored in; new ones after them
    const kept = current ? current.clientVersions.filter((v) => checked.includes(v)) : [];
    return { clientVersions: [...kept, ...checked.filter((v) => !kept.includes(v))], backendVersion: backend.value || null };
  }

  function update() {
    details.hidden = all.input.checked;
    line.textContent = explain(chosen());
  }

  const element = h("div", { class: "protocol" },
    all.box,
    h("span", { class: "field-error", id: "api-protocol-all-error", dataset: { errorFor: "protocol" } }),
    only.box, details, line);
  element.addEventListener("change", update);
  update();
  return {
    element,
    read() {
      const out = chosen();
      const problem = validate.protocol(out);
      if (problem) throw new LocalFieldError(problem[0], problem[1]);
      return out;
    },
  };
}
