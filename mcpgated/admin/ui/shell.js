// What every view shares: the banner, messages carried to the next view,
// navigation.

import { clear, h } from "./dom.js";

const region = () => document.getElementById("banner");
let carried = null;

/** Show a banner: kind is "error", "success" or "info". */
export function showBanner(message, kind = "error") {
  const el = clear(region());
  const dismiss = h("button", { type: "button", class: "button secondary small", "aria-label": "Dismiss message" }, "Dismiss");
  const banner = h("div", { class: `banner ${kind}`, dataset: { kind } },
    h("p", {}, kind === "error" ? h("strong", {}, "Error: ") : null, message), dismiss);
  dismiss.addEventListener("click", () => {
    banner.remove();
    document.getElementById("main").focus();
  });
  el.append(banner);
}

export function clearBanner() {
  clear(region());
}

/** A message for the view the console goes to next (shown once). */
export function carry(message, kind = "success") {
  carried = { message, kind };
}

export function showCarried() {
  if (carried) {
    showBanner(carried.message, carried.kind);
    carried = null;
  }
}

export function navigate(hash) {
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = hash;
}

export function setTitle(text) {
  document.title = `${text} · mcpgated`;
}

/** Route params: "#/logs?method=x" -> { path: ["logs"], params: URLSearchParams }. */
export function currentRoute() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, search] = raw.split("?", 2);
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(search || "") };
}

export function hashFor(path, params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return `#/${path}${text ? `?${text}` : ""}`;
}
