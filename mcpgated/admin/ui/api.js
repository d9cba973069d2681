// The admin API, called with the token the operator signed in with. The
// token lives in sessionStorage (this tab only, gone when it closes) and only
// ever travels in the Authorization header: never in a URL, never logged.

const TOKEN_KEY = "mcpgated.adminToken";

// The console is served at <admin>/ui/; the admin API is its parent.
export const adminBase = new URL("../", window.location.href);

export const session = {
  token() {
    return window.sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token) {
    window.sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut() {
    window.sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || null;
  }

  // What to tell the operator, in one sentence.
  describe(action) {
    const what = action ? `${action} failed: ` : "";
    if (this.status === 0) return `${what}${this.message}`;
    return `${what}${this.message} (HTTP ${this.status}${this.field ? `, field ${this.field}` : ""})`;
  }
}

let unauthorizedHandler = () => {};

export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * One admin API call: resolves with the JSON body, rejects with an ApiError
 * carrying the API's own {"error", "field"}.
 */
export async function call(method, path, body, options = {}) {
  const token = options.token ?? session.token() ?? "";
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, adminBase), init);
  } catch (e) {
    throw new ApiError(0, `the admin API at ${adminBase.origin} did not answer (is mcpgated running?)`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (!response.ok) {
    const message = data && typeof data.error === "string"
      ? data.error : `the admin API answered ${response.status} ${response.statusText}`.trim();
    const error = new ApiError(response.status, message, data && data.field);
    if (response.status === 401 && !options.signingIn) unauthorizedHandler(error);
    throw error;
  }
  return data;
}

export const api = {
  health: () => call("GET", "health"),
  gateway: () => call("GET", "gateway"),
  list: () => call("GET", "apis").then((body) => body.data),
  get: (id) => call("GET", `apis/${encodeURIComponent(id)}`),
  create: (definition) => call("POST", "apis", definition),
  update: (id, definition) => call("PUT", `apis/${encodeURIComponent(id)}`, definition),
  remove: (id) => call("DELETE", `apis/${encodeURIComponent(id)}`),
  action: (id, verb) => call("POST", `apis/${encodeURIComponent(id)}/_${verb}`),
  analytics: (id, params) => call("GET", `${id ? `apis/${encodeURIComponent(id)}/` : ""}analytics${query(params)}`),
  logs: (id, params) => call("GET", `${id ? `apis/${encodeURIComponent(id)}/` : ""}logs${query(params)}`),
  logEntry: (id, logId) => call("GET", `apis/${encodeURIComponent(id)}/logs/${encodeURIComponent(logId)}`),
  preview: (id, body) => call("POST", `apis/${encodeURIComponent(id)}/_preview`, body),
  applications: () => call("GET", "applications").then((body) => body.data),
  createApplication: (body) => call("POST", "applications", body),
  subscriptions: (id) => call("GET", `apis/${encodeURIComponent(id)}/subscriptions`).then((body) => body.data),
  subscribe: (id, body) => call("POST", `apis/${encodeURIComponent(id)}/subscriptions`, body),
  closeSubscription: (id, sid) => call("POST", `${subscription(id, sid)}/_close`),
  keys: (id, sid) => call("GET", `${subscription(id, sid)}/keys`).then((body) => body.data),
  issueKey: (id, sid) => call("POST", `${subscription(id, sid)}/keys`),
  rotateKeys: (id, sid, expireOldAfter) => call("POST", `${subscription(id, sid)}/keys/_rotate`, { expireOldAfter }),
  revokeKey: (id, sid, keyId) => call("DELETE", `${subscription(id, sid)}/keys/${encodeURIComponent(keyId)}`),
};

function subscription(id, sid) {
  return `apis/${encodeURIComponent(id)}/subscriptions/${encodeURIComponent(sid)}`;
}

// --- where MCP clients connect -----------------------------------------------------------

let gatewayInfo = null;

export async function loadGateway() {
  if (gatewayInfo === null) {
    try {
      gatewayInfo = await api.gateway();
    } catch (e) {
      if (e.status === 401) throw e;
      gatewayInfo = { publicUrl: null, listeners: [] };
    }
  }
  return gatewayInfo;
}

export function forgetGateway() {
  gatewayInfo = null;
}

/** The URL MCP clients use for an API: its publicUrl, the gateway's public_url, or a listener. */
export function clientUrl(apiRecord, info) {
  const path = (apiRecord.deployed || apiRecord).contextPath;
  const own = (apiRecord.deployed || apiRecord).publicUrl;
  let base = own || (info && info.publicUrl);
  if (!base && info && info.listeners.length) {
    const listener = info.listeners[0];
    let host = listener.host || window.location.hostname;
    if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
    base = `${listener.scheme}://${host}:${listener.port}`;
  }
  return `${(base || "http://<gateway>").replace(/\/+$/, "")}${path}`;
}
