// DOM helpers. Everything the console shows from the gateway (names, tool
// names, error messages, payloads: much of it written by MCP clients) goes in
// as text nodes, never as HTML.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  let value;
  for (const [key, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (key === "class") el.className = v;
    else if (key === "value") value = v;
    else if (key === "dataset") Object.assign(el.dataset, v);
    else if (key.startsWith("on") && typeof v === "function") el.addEventListener(key.slice(2), v);
    else el.setAttribute(key, v === true ? "" : String(v));
  }
  append(el, children);
  if (value !== undefined) el.value = value;
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function fmtInt(n) {
  return n === null || n === undefined ? "–" : numbers.format(n);
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 10000) return `${numbers.format(ms / 1000)} s`;
  return `${numbers.format(Math.round(ms * 10) / 10)} ms`;
}

export function fmtPercent(rate) {
  if (rate === null || rate === undefined) return "–";
  return `${numbers.format(Math.round(rate * 1000) / 10)}%`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  for (const [unit, size] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) {
    if (n >= size) return `${numbers.format(n / size)} ${unit}`;
  }
  return `${n} B`;
}

// Times, everywhere in the console, in one format: ISO-like, 24-hour, local
// time ("2026-12-03 14:05:09"; "14:05:09" for today where the day is implied),
// whatever the browser's locale would say ("12/3/2026, 2:05:09 PM").
const pad = (n) => String(n).padStart(2, "0");
const ymd = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
const hms = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;

export function fmtTime(epochSeconds, withDay) {
  if (epochSeconds === null || epochSeconds === undefined) return "–";
  const when = new Date(epochSeconds * 1000);
  if (Number.isNaN(when.getTime())) return "–";
  return withDay || ymd(when) !== ymd(new Date()) ? `${ymd(when)} ${hms(when)}` : hms(when);
}

/** An ISO 8601 time from the admin API (deployedAt, createdAt...), with its day. */
export function fmtDate(iso) {
  return iso ? fmtTime(Date.parse(iso) / 1000, true) : "–";
}

export function isoTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toISOString();
}

export function badge(text, kind, title) {
  return h("span", { class: `badge ${kind || ""}`.trim(), title }, text);
}

// Field errors: an input with data-field="contextPath" and its error element.
export function field({ id, label, hint, input, fieldName }) {
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  input.id = id;
  if (fieldName) input.dataset.field = fieldName;
  input.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("span", { class: "hint", id: hintId }, hint) : null,
    h("span", { class: "field-error", id: errorId, dataset: { errorFor: fieldName || id } }),
  );
}

export function setFieldError(root, fieldName, message) {
  const input = root.querySelector(`[data-field="${CSS.escape(fieldName)}"]`);
  if (!input) return false;
  const error = root.querySelector(`#${CSS.escape(input.id)}-error`);
  if (error) error.textContent = message || "";
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  return true;
}

export function clearFieldErrors(root) {
  for (const el of root.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of root.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/**
 * Show an error at the field the API names, or, when the form has no input
 * for it (plans[0].acl.rules[2].tools), at the nearest one that holds it.
 * @returns the input, or null.
 */
export function setNearestFieldError(root, fieldName, message) {
  let name = fieldName || "";
  while (name) {
    for (const candidate of /(^|\.)acl$/.test(name) ? [name, `${name}.rules`] : [name]) {
      if (setFieldError(root, candidate, message)) return root.querySelector(`[data-field="${CSS.escape(candidate)}"]`);
    }
    const cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("["));
    name = cut > 0 ? name.slice(0, cut) : "";
  }
  return null;
}
