// The admin API's validation (mcpgated/model.py), run in the browser so the
// wizard can say what is wrong before sending. Same rules, same messages;
// the API stays the judge (overlaps with deployed APIs are only known there)
// and its own field errors are shown as they come.

const SEGMENT = /^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$/;
const CONTROL = /[\u0000-\u0008\u000b-\u001f]/;

export function text(value, field, maxLength, required = true) {
  const v = (value || "").trim();
  if (required && !v) return `${field} must not be empty`;
  if (v.length > maxLength) return `${field} is longer than ${maxLength} characters`;
  if (CONTROL.test(v)) return `${field} contains control characters`;
  return null;
}

function unquote(segment) {
  try {
    return decodeURIComponent(segment);
  } catch (e) {
    return segment;
  }
}

export function contextPath(raw) {
  const value = (raw || "").trim();
  const basic = text(value, "contextPath", 200);
  if (basic) return basic;
  if (!value.startsWith("/")) return "contextPath must be an absolute path starting with '/'";
  if (value.includes("?") || value.includes("#")) return "contextPath must not contain a query or fragment";
  if (value.includes("//")) return "contextPath must not contain empty segments ('//')";
  const segments = value.split("/").filter(Boolean);
  if (!segments.length) return "contextPath must have at least one segment, e.g. /mcp-proxy";
  for (const segment of segments) {
    if ([".", ".."].includes(unquote(segment))) return "contextPath must not contain '.' or '..' segments";
    if (!SEGMENT.test(segment)) return `contextPath segment '${segment}' has characters not allowed in a URL path`;
  }
  if (segments[0] === ".well-known") return "contextPath must not start with /.well-known (reserved)";
  return null;
}

export function backend(raw) {
  const value = (raw || "").trim();
  const basic = text(value, "backend", 2000);
  if (basic) return basic;
  let url;
  try {
    url = new URL(value);
  } catch (e) {
    return "backend is not a valid URL: give an http:// or https:// URL, e.g. http://localhost:3001/mcp";
  }
  if (!["http:", "https:"].includes(url.protocol)) return "backend must be an http:// or https:// URL";
  if (!url.hostname) return "backend must name a host";
  if (url.username || url.password) return "backend must not embed credentials in the URL";
  if (value.includes("#")) return "backend must not have a fragment";
  if (/\s/.test(value)) return "backend must not contain whitespace";
  const path = value.replace(/^[a-z]+:\/\/[^/]*/i, "").split(/[?#]/)[0];
  if (path.split("/").includes("..")) return "backend path must not contain '..' segments";
  return null;
}

export function planName(raw, index = 0) {
  const message = text(raw, "name", 100);
  return message ? `plans[${index}].${message}` : null;
}

// Which wizard step a field the API names belongs to.
export function stepOf(fieldName) {
  if (!fieldName) return null;
  if (fieldName === "name" || fieldName === "version" || fieldName === "description") return 0;
  if (fieldName === "contextPath") return 1;
  if (fieldName === "backend" || fieldName === "backendCaFile") return 2;
  if (fieldName.startsWith("plans")) return 3;
  return null;
}

// The MCP protocol versions an API may list (mcpgated/mcp/bridge.py KNOWN_VERSIONS).
export const HANDSHAKE_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
export const MODERN_VERSIONS = ["2026-07-28"];
export const PROTOCOL_VERSIONS = [...HANDSHAKE_VERSIONS, ...MODERN_VERSIONS];

/** An API's "protocol" settings (null: pass-through): [field, message] or null, as definitions.py says it. */
export function protocol(settings) {
  if (settings === null) return null;
  const known = PROTOCOL_VERSIONS.join(", ");
  const versions = settings.clientVersions;
  if (!Array.isArray(versions) || !versions.length) {
    return ["protocol.clientVersions", `protocol.clientVersions must be a non-empty list of versions from ${known}`];
  }
  for (const [index, version] of versions.entries()) {
    if (!PROTOCOL_VERSIONS.includes(version) || versions.indexOf(version) !== index) {
      return [`protocol.clientVersions[${index}]`, `protocol.clientVersions[${index}] must be one of ${known}, once`];
    }
  }
  const backend = settings.backendVersion;
  if (backend !== null && !PROTOCOL_VERSIONS.includes(backend)) {
    return ["protocol.backendVersion", `protocol.backendVersion must be one of ${known}`];
  }
  return null;
}
