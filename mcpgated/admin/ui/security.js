// Security settings on the API page: each plan's settings (API key, JWT,
// OAuth 2 introspection), rate limit and access-control rules, and the API's
// own rules, backend credential, public URL and OAuth relay. Secrets are
// never shown back: the admin API sends them masked, and an empty secret
// field sends the mask again, which keeps the stored value.

import { field, h } from "./dom.js";

export const MASK = "********";

/** A value the console cannot send (bad JSON): shown at its field like the API's own errors. */
export class LocalFieldError extends Error {
  constructor(fieldName, message) {
    super(message);
    this.field = fieldName;
  }
}

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
const joined = (value) => (Array.isArray(value) ? value.join(", ") : value || "");

function textInput(value, extra) {
  return h("input", Object.assign({ type: "text", value: value ?? "", spellcheck: "false" }, extra || {}));
}

/** A checkbox with its label beside it, and an error element like field()'s. */
export function checkField({ id, label, hint, checked, fieldName }) {
  const input = h("input", { type: "checkbox", id, checked: checked || null, dataset: { field: fieldName } });
  input.setAttribute("aria-describedby", `${id}-error${hint ? ` ${id}-hint` : ""}`);
  const box = h("div", { class: "field check" },
    h("label", { for: id }, input, " ", label),
    hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null,
    h("span", { class: "field-error", id: `${id}-error`, dataset: { errorFor: fieldName } }));
  return { box, input };
}

/** A secret: never filled in; empty keeps the stored one. */
function secretField({ id, label, fieldName, stored, hint }) {
  const input = h("input", { type: "password", autocomplete: "new-password", spellcheck: "false",
    placeholder: stored ? "stored (hidden): type to replace" : "" });
  return {
    box: field({ id, label, input, fieldName, hint }),
    read: () => (input.value ? input.value : stored ? MASK : null),
  };
}

// The settings each plan type has in the console: [key, label, kind, hint].
const SETTINGS = {
  API_KEY: [
    ["header", "API key header", "text", "Default X-Gravitee-Api-Key"],
    ["queryParam", "API key query parameter", "query", "Default api-key; empty: keys only in the header"],
  ],
  JWT: [
    ["issuer", "Issuer", "text", "The iss claim, e.g. https://idp.example"],
    ["jwksUrl", "JWKS URL", "text", "Where the issuer's key set is, e.g. https://idp.example/jwks"],
    ["audience", "Audience", "list", "Comma-separated; empty: the API's public resource URL"],
    ["requiredScopes", "Required scopes", "list", "Comma-separated"],
    ["authorizationServers", "Authorization servers", "list", "Comma-separated; empty: the issuer"],
  ],
  OAUTH2: [
    ["introspectionUrl", "Introspection endpoint", "text", "RFC 7662, e.g. https://idp.example/introspect"],
    ["clientId", "Client id", "text", "The gateway's credentials at the introspection endpoint"],
    ["clientSecret", "Client secret", "secret", null],
    ["audience", "Audience", "list", "Comma-separated; empty: the API's public resource URL"],
    ["requiredScopes", "Required scopes", "list", "Comma-separated"],
    ["authorizationServers", "Authorization servers", "list", "Comma-separated, for the metadata clients read"],
  ],
};

/** The settings of one plan's security type; redrawn when the type changes. */
export function planSettings(plan, index, securitySelect) {
  const where = `plans[${index}]`;
  const box = h("div", { class: "plan-settings" });
  let readers = [];
  function draw() {
    box.replaceChildren();
    readers = [];
    const security = securitySelect.value;
    const config = security === plan.security ? plan.configuration || {} : {};
    for (const [key, label, kind, hint] of SETTINGS[security] || []) {
      const id = `plan-${index}-${key}`;
      const fieldName = `${where}.configuration.${key}`;
      if (kind === "secret") {
        const secret = secretField({ id, label, fieldName, stored: Boolean(config[key]),
          hint: "Never shown: leave empty to keep the stored secret." });
        box.append(secret.box);
        readers.push((out) => {
          const value = secret.read();
          if (value === null) delete out[key];
          else out[key] = value;
        });
        continue;
      }
      const input = textInput(kind === "list" ? joined(config[key]) : config[key]);
      box.append(field({ id, label, input, fieldName, hint }));
      readers.push((out) => {
        const value = input.value.trim();
        if (kind === "list") {
          if (list(value).length) out[key] = list(value);
          else delete out[key];
        } else if (value || kind === "query") out[key] = value;
        else delete out[key];
      });
    }
  }
  securitySelect.addEventListener("change", draw);
  draw();
  return {
    element: box,
    read() {
      const security = securitySelect.value;
      const out = Object.assign({}, security === plan.security ? plan.configuration || {} : {});
      for (const reader of readers) reader(out);
      if (security === "JWT" && out.jwksUrl) delete out.publicKey;
      return out;
    },
  };
}

/** A plan's rate limit: empty counts mean none. */
export function rateLimitEditor(limit, index) {
  const where = `plans[${index}].rateLimit`;
  const current = limit || {};
  const number = (value) => h("input", { type: "number", min: 0, step: 1, value: value ?? "" });
  const requests = number(current.requests);
  const toolCalls = number(current.toolCalls);
  const period = h("input", { type: "number", min: 1, step: 1, value: current.periodSeconds ?? 60 });
  const scope = h("select", {},
    h("option", { value: "subscription", selected: current.scope !== "plan" || null }, "Each consumer apart"),
    h("option", { value: "plan", selected: current.scope === "plan" || null }, "Shared by the plan"));
  const perTool = textInput(Object.entries(current.perTool || {}).map(([k, v]) => `${k}=${v}`).join(", "));
  const id = `plan-${index}-rate`;
  return {
    element: h("fieldset", { class: "inline" }, h("legend", {}, "Rate limit"),
      field({ id: `${id}-requests`, label: "Requests per period", input: requests, fieldName: `${where}.requests` }),
      field({ id: `${id}-tools`, label: "Tool calls per period", input: toolCalls, fieldName: `${where}.toolCalls` }),
      field({ id: `${id}-per-tool`, label: "Calls per tool", input: perTool, fieldName: `${where}.perTool`,
        hint: "e.g. expensive=2, search=10" }),
      field({ id: `${id}-period`, label: "Period (seconds)", input: period, fieldName: `${where}.periodSeconds` }),
      field({ id: `${id}-scope`, label: "Counted", input: scope, fieldName: `${where}.scope` })),
    read() {
      const out = { periodSeconds: Number(period.value || 60), scope: scope.value };
      if (requests.value !== "") out.requests = Number(requests.value);
      if (toolCalls.value !== "") out.toolCalls = Number(toolCalls.value);
      const tools = {};
      for (const entry of list(perTool.value)) {
        const [name, count] = entry.split("=").map((s) => s.trim());
        tools[name] = /^\d+$/.test(count || "") ? Number(count) : count ?? "";
      }
      if (Object.keys(tools).length) out.perTool = tools;
      return "requests" in out || "toolCalls" in out || "perTool" in out ? out : null;
    },
  };
}

/** Access-control rules as JSON (any rule the API takes), and dry run. */
export function aclEditor(acl, id, fieldName, legend) {
  const rules = h("textarea", { class: "mono rules", spellcheck: "false", rows: 6,
    value: acl && acl.rules && acl.rules.length ? `[\n${acl.rules.map((r) => `  ${JSON.stringify(r)}`).join(",\n")}\n]` : "" });
  const dry = checkField({ id: `${id}-dry-run`, label: "Dry run: let everything through, mark what would be denied",
    checked: Boolean(acl && acl.dryRun), fieldName: `${fieldName}.dryRun` });
  return {
    element: h("fieldset", {}, h("legend", {}, legend),
      field({ id: `${id}-rules`, label: "Rules (JSON list)", input: rules, fieldName: `${fieldName}.rules`,
        hint: 'e.g. [{"tools": ["echo", "get-*"], "plans": ["Gold"]}, {"resources": ["demo://*"]}]; empty: no rules, everything allowed' }),
      dry.box),
    read() {
      const text = rules.value.trim();
      let parsed = [];
      if (text) {
        try {
          parsed = JSON.parse(text);
        } catch (e) {
          throw new LocalFieldError(`${fieldName}.rules`, `${fieldName}.rules is not valid JSON: ${e.message}`);
        }
        if (!Array.isArray(parsed)) throw new LocalFieldError(`${fieldName}.rules`, `${fieldName}.rules must be a JSON list of rules`);
      }
      return parsed.length || dry.input.checked ? { rules: parsed, dryRun: dry.input.checked } : null;
    },
  };
}

/** The API's own security: rules, backend credential, public URL, OAuth relay. */
export function apiSecurity(record) {
  const auth = record.backendAuth || {};
  const oauth = record.oauth || {};
  const publicUrl = textInput(record.publicUrl, { type: "url" });
  const header = textInput(auth.header);
  const value = secretField({ id: "api-backend-auth-value", label: "Backend credential value",
    fieldName: "backendAuth.value", stored: Boolean(auth.value),
    hint: "Never shown: leave empty to keep the stored value." });
  const forward = checkField({ id: "api-forward-token", label: "Forward the client's token to the backend",
    checked: auth.forwardClientToken, fieldName: "backendAuth.forwardClientToken" });
  const relay = checkField({ id: "api-oauth-relay", label: "Relay the backend's OAuth (challenges and protected-resource metadata)",
    checked: oauth.relay, fieldName: "oauth.relay" });
  const discovery = checkField({ id: "api-oauth-discovery",
    label: "Serve the backend's authorization-server metadata at the root (older clients)",
    checked: oauth.proxyAuthorizationServerDiscovery, fieldName: "oauth.proxyAuthorizationServerDiscovery" });
  const acl = aclEditor(record.acl, "api-acl", "acl", "Access control (every plan)");
  return {
    element: h("div", {},
      acl.element,
      h("fieldset", {}, h("legend", {}, "Backend credential"),
        field({ id: "api-backend-auth-header", label: "Backend credential header", input: header,
          fieldName: "backendAuth.header", hint: "A header the gateway sends the backend, e.g. Authorization" }),
        value.box, forward.box),
      h("fieldset", {}, h("legend", {}, "Public URL and OAuth relay"),
        field({ id: "api-public-url", label: "Public URL", input: publicUrl, fieldName: "publicUrl",
          hint: "Where clients reach the gateway, e.g. https://gw.example; empty: [gateway] public_url or the request" }),
        relay.box, discovery.box)),
    read() {
      const out = {
        acl: acl.read(),
        publicUrl: publicUrl.value.trim() || null,
        oauth: { relay: relay.input.checked, proxyAuthorizationServerDiscovery: discovery.input.checked },
        backendAuth: null,
      };
      const name = header.value.trim();
      const secret = value.read();
      if (name || (secret && secret !== MASK)) {
        out.backendAuth = { header: name, value: secret || "", forwardClientToken: forward.input.checked };
      } else if (forward.input.checked) {
        out.backendAuth = { forwardClientToken: true };
      }
      return out;
    },
  };
}
