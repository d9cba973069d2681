// mcpgated web console: sign-in, navigation between the views.

import { api, call, forgetGateway, onUnauthorized, session } from "./api.js";
import { clear, field, h } from "./dom.js";
import { clearBanner, currentRoute, setTitle, showBanner, showCarried } from "./shell.js";
import { renderApiList, renderApiPage } from "./apis.js";
import { renderWizard } from "./wizard.js";
import { renderLogDetail, renderLogs } from "./logs.js";
import { renderDashboard } from "./dashboard.js";
import { renderPins } from "./pins.js";
import { renderSubscriptions } from "./subscriptions.js";
import { renderPreview } from "./preview.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
let cleanup = null;
let signInMessage = null;
let lastPath = null;
let generation = 0;
let rendered = false; // on the first page load, focus stays at the top (skip link first)

function routeFor(path) {
  const [section, a, b] = path;
  if (section === "apis" && a === "new") return [renderWizard, []];
  if (section === "apis" && a && b === "pins") return [renderPins, [a]];
  if (section === "apis" && a && b === "subscriptions") return [renderSubscriptions, [a]];
  if (section === "apis" && a && b === "preview") return [renderPreview, [a]];
  if (section === "apis" && a) return [renderApiPage, [a]];
  if (section === "logs" && a && b) return [renderLogDetail, [a, b]];
  if (section === "logs") return [renderLogs, []];
  if (section === "dashboard") return [renderDashboard, []];
  return [renderApiList, []];
}

async function render() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const { path, params } = currentRoute();
  const pathKey = path.join("/");
  const moved = pathKey !== lastPath;
  lastPath = pathKey;
  if (!session.token()) {
    renderSignIn();
    return;
  }
  showSignedIn(true);
  const section = path[0] || "apis";
  for (const link of nav.querySelectorAll("a[data-section]")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (moved) clearBanner();
  showCarried();
  const [view, args] = routeFor(path);
  const mine = ++generation;
  const root = h("div", { class: "view" });
  clear(main).append(root);
  try {
    const done = (await view(root, params, ...args)) || null;
    if (mine !== generation) {
      if (done) done(); // another view replaced this one meanwhile
      return;
    }
    cleanup = done;
  } catch (e) {
    if (mine !== generation || (e && e.status === 401)) return; // 401: back to sign-in
    showBanner(e && e.describe ? e.describe() : `Something went wrong in the console: ${e}`);
  }
  if (moved && rendered) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }
  rendered = true;
}

function showSignedIn(signedIn) {
  nav.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
}

function renderSignIn() {
  generation++;
  rendered = true;
  showSignedIn(false);
  setTitle("Sign in");
  const input = h("input", { type: "password", autocomplete: "current-password", required: true, spellcheck: "false" });
  const error = h("p", { class: "field-error", id: "signin-error", role: "alert" });
  const button = h("button", { type: "submit", class: "button" }, "Sign in");
  const form = h("form", { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to mcpgated"),
    h("p", { class: "muted" },
      "Use the admin token: [admin] token in the configuration, the file named by token_file, ",
      "or the one generated into admin.token beside the database on first start."),
    h("input", { type: "text", autocomplete: "username", value: "mcpgated-admin", hidden: true, tabindex: "-1", "aria-hidden": "true" }),
    field({ id: "token", label: "Admin token", input }),
    error,
    button,
  );
  input.setAttribute("aria-describedby", "signin-error");
  if (signInMessage) {
    error.textContent = signInMessage;
    signInMessage = null;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = "Enter the admin token.";
      input.focus();
      return;
    }
    button.disabled = true;
    error.textContent = "";
    try {
      await call("GET", "apis", undefined, { token, signingIn: true });
    } catch (e) {
      button.disabled = false;
      input.setAttribute("aria-invalid", "true");
      error.textContent = e.status === 401
        ? "The gateway refused this token (HTTP 401: missing or wrong admin token). Check the token and try again."
        : `Could not sign in: ${e.describe()}`;
      input.select();
      return;
    }
    session.signIn(token);
    lastPath = null; // focus goes to the page's heading
    forgetGateway();
    loadVersion();
    render();
  });
  const root = clear(main);
  clearBanner();
  root.append(form);
  input.focus();
}

async function loadVersion() {
  try {
    const health = await api.health();
    document.getElementById("version").textContent = `v${health.version}`;
  } catch (e) {
    document.getElementById("version").textContent = "";
  }
}

onUnauthorized(() => {
  if (!session.token()) return; // already back at sign-in
  session.signOut();
  signInMessage = "The gateway no longer accepts the token this tab signed in with (HTTP 401). Sign in again.";
  render();
});

signOutButton.addEventListener("click", () => {
  session.signOut();
  forgetGateway();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  renderSignIn();
});

// The skip link moves focus; following its #main would look like a route.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", render);
if (!window.location.hash) window.history.replaceState(null, "", "#/apis");
if (session.token()) loadVersion();
render();
