// Consumers of one API: applications, their subscriptions to its plans, and
// the subscriptions' API keys (issue, rotate with a grace period, revoke),
// closing a subscription. A new key is shown once, with a copy button: the
// gateway keeps only its hash.

import { api } from "./api.js";
import { badge, clearFieldErrors, field, fmtDate, h, setNearestFieldError } from "./dom.js";
import { setTitle, showBanner } from "./shell.js";

const STATUS = { ACTIVE: "ok", ACCEPTED: "ok", EXPIRED: "warn", REVOKED: "error", CLOSED: "error" };

const when = fmtDate;

/** Ask before something that cannot be undone; resolves true to go on. */
export function confirmAction(title, text, label) {
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button", class: "button secondary", autofocus: true }, "Cancel");
    const confirm = h("button", { type: "button", class: "button danger" }, label);
    const dialog = h("dialog", { "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
      h("h2", { id: "confirm-title" }, title), h("p", { id: "confirm-text" }, text),
      h("div", { class: "row" }, cancel, confirm));
    let answer = false;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    cancel.addEventListener("click", () => dialog.close());
    confirm.addEventListener("click", () => {
      answer = true;
      dialog.close();
    });
    dialog.showModal();
  });
}

/** The secret of a new key, shown once with a copy button. */
function issuedKey(key, what) {
  const value = h("input", { type: "text", readonly: true, value: key.key, class: "mono secret-value",
    id: "issued-key", "aria-label": "New API key", spellcheck: "false" });
  const copy = h("button", { type: "button", class: "button" }, "Copy key");
  const status = h("span", { class: "muted", role: "status" });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(key.key);
      status.textContent = "Copied to the clipboard.";
    } catch (e) {
      value.select();
      status.textContent = "The browser refused the clipboard: the key is selected, copy it with Ctrl+C.";
    }
  });
  return h("section", { class: "card issued", role: "region", "aria-label": "New API key" },
    h("h2", {}, `New API key for ${what}`),
    h("p", {}, h("strong", {}, "Shown once: "), "copy it now. The gateway keeps only its hash; ",
      "this page will not show it again."),
    h("div", { class: "row" }, value, copy, status),
    key.expiresAt ? h("p", { class: "muted" }, `Expires ${when(key.expiresAt)}.`) : null);
}

export async function renderSubscriptions(root, params, id) {
  const record = await api.get(id);
  let issued = null; // { key, what }: shown until the next change on this page

  async function load() {
    const [applications, subscriptions] = await Promise.all([api.applications(), api.subscriptions(id)]);
    const keys = new Map(await Promise.all(subscriptions
      .filter((s) => planOf(s.plan)?.security === "API_KEY")
      .map(async (s) => [s.id, await api.keys(id, s.id)])));
    return { applications, subscriptions, keys };
  }

  function planOf(name) {
    return record.plans.find((p) => p.name === name);
  }

  async function act(work, success) {
    try {
      const result = await work();
      await draw();
      if (success) showBanner(typeof success === "function" ? success(result) : success, "success");
      return result;
    } catch (e) {
      showBanner(e.describe ? e.describe() : String(e));
      return null;
    }
  }

  function applicationForm() {
    const name = h("input", { type: "text", required: true, maxlength: 100 });
    const description = h("input", { type: "text", maxlength: 2000 });
    const form = h("form", { class: "card", "aria-labelledby": "new-app-title", novalidate: true },
      h("h2", { id: "new-app-title" }, "New application"),
      h("p", { class: "muted" }, "An application is a consumer: it subscribes to plans and holds their keys."),
      field({ id: "app-name", label: "Application name", input: name, fieldName: "name" }),
      field({ id: "app-description", label: "Application description", input: description, fieldName: "description" }),
      h("button", { type: "submit", class: "button" }, "Create application"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      try {
        const created = await api.createApplication({ name: name.value, description: description.value });
        issued = null;
        await draw();
        showBanner(`Created the application “${created.name}”.`, "success");
      } catch (e) {
        setNearestFieldError(form, e.field, e.message);
        showBanner(e.describe("Creating the application"));
      }
    });
    return form;
  }

  function subscribeForm(applications) {
    const plans = record.plans.filter((p) => p.security !== "KEY_LESS");
    const application = h("select", {}, applications.map((a) => h("option", { value: a.id }, a.name)));
    const plan = h("select", {}, plans.map((p) => h("option", { value: p.name },
      `${p.name} (${p.security}${p.status === "PUBLISHED" ? "" : `, ${p.status.toLowerCase()}`})`)));
    const button = h("button", { type: "submit", class: "button", disabled: !applications.length || !plans.length || null }, "Subscribe");
    const form = h("form", { class: "card", "aria-labelledby": "subscribe-title", novalidate: true },
      h("h2", { id: "subscribe-title" }, "Subscribe an application"),
      plans.length ? null : h("p", { class: "muted" }, "Only API key, JWT and OAuth 2 plans take subscriptions: this API has none."),
      field({ id: "subscribe-application", label: "Application", input: application, fieldName: "application" }),
      field({ id: "subscribe-plan", label: "Plan", input: plan, fieldName: "plan",
        hint: "A PUBLISHED plan of the stored definition" }),
      button);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      try {
        const sub = await api.subscribe(id, { application: application.value, plan: plan.value });
        issued = null;
        await draw();
        showBanner(`Subscribed “${sub.applicationName}” to the plan ${sub.plan}.`, "success");
      } catch (e) {
        setNearestFieldError(form, e.field, e.message);
        showBanner(e.describe("Subscribing"));
      }
    });
    return form;
  }

  function subscriptionCard(sub, keys) {
    const what = `${sub.applicationName} to ${sub.plan}`;
    const open = sub.status === "ACCEPTED";
    const plan = planOf(sub.plan);
    const card = h("section", { class: "card subscription", role: "region", "aria-label": `Subscription of ${what}` },
      h("h3", {}, `${sub.applicationName} → ${sub.plan} `, badge(sub.status, STATUS[sub.status])),
      h("p", { class: "muted" }, `Since ${when(sub.createdAt)}${sub.closedAt ? `, closed ${when(sub.closedAt)}` : ""} · id `,
        h("span", { class: "mono" }, sub.id)));
    if (plan && plan.security === "API_KEY") {
      const rows = (keys || []).map((key) => {
        const revoke = h("button", { type: "button", class: "button secondary small" }, `Revoke key ${key.prefix}…`);
        revoke.hidden = key.status !== "ACTIVE";
        revoke.addEventListener("click", async () => {
          if (!await confirmAction(`Revoke the key ${key.prefix}…?`, "Clients using it are refused at once.", "Revoke")) return;
          issued = null;
          await act(() => api.revokeKey(id, sub.id, key.id), `Revoked the key ${key.prefix}… of ${what}.`);
        });
        return h("tr", {}, h("th", { scope: "row", class: "mono" }, `${key.prefix}…`),
          h("td", {}, badge(key.status, STATUS[key.status])), h("td", {}, when(key.createdAt)),
          h("td", {}, when(key.expiresAt)), h("td", {}, revoke));
      });
      card.append(rows.length
        ? h("div", { class: "table-wrap" }, h("table", {},
          h("caption", { class: "visually-hidden" }, `Keys of ${what}`),
          h("thead", {}, h("tr", {}, ["Key", "Status", "Issued", "Expires", ""].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows)))
        : h("p", { class: "muted" }, "No keys yet."));
      if (open) {
        const issue = h("button", { type: "button", class: "button" }, "Issue key");
        issue.addEventListener("click", async () => {
          const key = await act(() => api.issueKey(id, sub.id).then((k) => { issued = { key: k, what }; return k; }),
            (k) => `Issued the key ${k.prefix}… for ${what}.`);
          if (key) document.getElementById("issued-key")?.focus();
        });
        const grace = h("input", { type: "number", min: 0, max: 31536000, step: 1, value: 3600 });
        const rotate = h("button", { type: "button", class: "button secondary" }, "Rotate keys");
        rotate.addEventListener("click", async () => {
          const seconds = grace.value === "" ? 3600 : Number(grace.value);
          const key = await act(() => api.rotateKeys(id, sub.id, seconds).then((k) => { issued = { key: k, what }; return k; }),
            (k) => `Rotated: the new key ${k.prefix}… works now; the old ones ${seconds ? `keep working ${seconds} s` : "stopped at once"}.`);
          if (key) document.getElementById("issued-key")?.focus();
        });
        card.append(h("div", { class: "row key-actions" }, issue,
          field({ id: `grace-${sub.id}`, label: "Old keys keep working (seconds)", input: grace, fieldName: "expireOldAfter" }),
          rotate));
      }
    } else if (plan) {
      card.append(h("p", { class: "muted" }, `${plan.security} plan: the consumer's tokens are checked by the plan's settings; no keys.`));
    }
    if (open) {
      const close = h("button", { type: "button", class: "button danger small" }, "Close subscription");
      close.addEventListener("click", async () => {
        if (!await confirmAction(`Close the subscription of ${what}?`, "Its keys are revoked at once; this cannot be undone.", "Close")) return;
        issued = null;
        await act(() => api.closeSubscription(id, sub.id), `Closed the subscription of ${what}; its keys are revoked.`);
      });
      card.append(h("div", { class: "row" }, close));
    }
    return card;
  }

  async function draw() {
    const data = await load();
    root.replaceChildren();
    setTitle(`Subscriptions of ${record.name}`);
    root.append(h("div", { class: "page-head" },
      h("h1", {}, `Subscriptions of ${record.name}`),
      h("div", { class: "actions" },
        h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(id)}` }, "Back to the API"),
        h("a", { class: "button secondary", href: `#/apis/${encodeURIComponent(id)}/preview` }, "Consumer view"))));
    if (issued) root.append(issuedKey(issued.key, issued.what));
    const subs = h("section", { class: "pins-section", "aria-labelledby": "subs-title" },
      h("h2", { id: "subs-title" }, "Subscriptions"));
    if (!data.subscriptions.length) subs.append(h("p", { class: "empty" }, "No subscriptions yet."));
    for (const sub of data.subscriptions) subs.append(subscriptionCard(sub, data.keys.get(sub.id)));
    root.append(subs);
    root.append(h("div", { class: "grid-2" }, subscribeForm(data.applications), applicationForm()));
    const apps = h("section", { class: "pins-section", "aria-labelledby": "apps-title" },
      h("h2", { id: "apps-title" }, "Applications"));
    apps.append(data.applications.length
      ? h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "visually-hidden" }, "Applications"),
        h("thead", {}, h("tr", {}, ["Name", "Description", "Id"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, data.applications.map((a) => h("tr", {},
          h("th", { scope: "row" }, a.name), h("td", {}, a.description || ""), h("td", { class: "mono" }, a.id))))))
      : h("p", { class: "empty" }, "No applications yet."));
    root.append(apps);
  }

  await draw();
  return null;
}
