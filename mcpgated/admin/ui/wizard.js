// Create an API in the order of the first guide: name and version, context
// path, backend, plan, then "Create and Deploy".

import { api, clientUrl, loadGateway } from "./api.js";
import { append, clear, clearFieldErrors, field, h, setFieldError } from "./dom.js";
import { carry, navigate, setTitle, showBanner, clearBanner } from "./shell.js";
import * as validate from "./validate.js";
import { SECURITY } from "./apis.js";

const STEPS = ["Name and version", "Context path", "Backend", "Plan", "Review"];

export async function renderWizard(root) {
  setTitle("Create an API");
  const info = await loadGateway();
  const state = { name: "", version: "", description: "", contextPath: "", backend: "", planName: "Keyless", security: "KEY_LESS" };
  let step = 0;
  let pendingError = null; // {field, message} from the API, shown on its step

  const heading = h("h1", {}, "Create an API");
  const steps = h("ol", { class: "steps", "aria-label": "Steps" });
  const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "step-title" });
  root.append(heading, h("p", { class: "muted" },
    "Publish an MCP server through the gateway. The API is created, deployed and started in one go."), steps, form);

  function input(key, props) {
    const el = h("input", Object.assign({ type: "text", value: state[key], spellcheck: "false" }, props));
    el.addEventListener("input", () => { state[key] = el.value; });
    return el;
  }

  function fieldsFor(index) {
    switch (index) {
      case 0:
        return [
          field({ id: "wizard-name", label: "Name", fieldName: "name", input: input("name", { required: true, maxlength: 100, placeholder: "Everything" }),
            hint: "How the API is listed, e.g. the MCP server's name." }),
          field({ id: "wizard-version", label: "Version", fieldName: "version", input: input("version", { required: true, maxlength: 50, placeholder: "1.0" }) }),
          field({ id: "wizard-description", label: "Description (optional)", fieldName: "description", input: input("description", { maxlength: 2000 }) }),
        ];
      case 1:
        return [field({ id: "wizard-context-path", label: "Context path", fieldName: "contextPath",
          input: input("contextPath", { required: true, placeholder: "/mcp-proxy" }),
          hint: "Where MCP clients reach this API on the gateway: an absolute path such as /mcp-proxy, with no query, no '..' and not inside another API's path." })];
      case 2:
        return [field({ id: "wizard-backend", label: "Backend URL", fieldName: "backend",
          input: input("backend", { type: "url", required: true, placeholder: "http://localhost:3001/mcp" }),
          hint: "The MCP server's streamable HTTP endpoint (or, for a legacy HTTP+SSE server, its base URL)." })];
      case 3: {
        const security = h("select", {}, SECURITY.map(([value, label]) => h("option", { value, selected: value === state.security || null }, label)));
        security.addEventListener("change", () => { state.security = security.value; });
        return [
          field({ id: "wizard-plan-name", label: "Plan name", fieldName: "plans[0].name", input: input("planName", { required: true, maxlength: 100 }) }),
          field({ id: "wizard-plan-security", label: "Security", fieldName: "plans[0].security", input: security,
            hint: "Keyless: any client may call the API. The gateway refuses a plan type it cannot enforce rather than deploy it unenforced." }),
        ];
      }
      default:
        return [h("dl", { class: "summary" },
          h("dt", {}, "Name"), h("dd", {}, state.name.trim()),
          h("dt", {}, "Version"), h("dd", {}, state.version.trim()),
          h("dt", {}, "Context path"), h("dd", {}, h("code", {}, state.contextPath.trim())),
          h("dt", {}, "Backend"), h("dd", {}, h("code", {}, state.backend.trim())),
          h("dt", {}, "Plan"), h("dd", {}, state.planName.trim()),
          h("dt", {}, "Security"), h("dd", {}, SECURITY.find(([v]) => v === state.security)[1]),
          h("dt", {}, "MCP clients will connect to"), h("dd", {}, h("code", {}, clientUrl({ contextPath: state.contextPath.trim() }, info))))];
    }
  }

  function check(index) {
    const problems = [];
    if (index === 0) {
      problems.push(["name", validate.text(state.name, "name", 100)], ["version", validate.text(state.version, "version", 50)],
        ["description", validate.text(state.description, "description", 2000, false)]);
    } else if (index === 1) {
      problems.push(["contextPath", validate.contextPath(state.contextPath)]);
    } else if (index === 2) {
      problems.push(["backend", validate.backend(state.backend)]);
    } else if (index === 3) {
      problems.push(["plans[0].name", validate.planName(state.planName, 0)]);
    }
    return problems.filter(([, message]) => message);
  }

  function draw() {
    clear(steps);
    STEPS.forEach((title, i) => steps.append(h("li", { class: i < step ? "done" : null, "aria-current": i === step ? "step" : null }, title)));
    clear(form);
    const back = h("button", { type: "button", class: "button secondary" }, step === 0 ? "Cancel" : "Back");
    back.addEventListener("click", () => {
      if (step === 0) {
        navigate("#/apis");
        return;
      }
      step -= 1;
      draw();
      focusFirst();
    });
    const next = h("button", { type: "submit", class: "button" }, step === STEPS.length - 1 ? "Create and Deploy" : "Next");
    append(form, [h("h2", { id: "step-title" }, `Step ${step + 1} of ${STEPS.length}: ${STEPS[step]}`),
      fieldsFor(step), h("div", { class: "wizard-actions" }, back, next)]);
    if (pendingError) {
      setFieldError(form, pendingError.field, pendingError.message);
      pendingError = null;
    }
  }

  function focusFirst() {
    const target = form.querySelector("[aria-invalid='true']") || form.querySelector("input, select") || form.querySelector("button[type=submit]");
    if (target) target.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    if (step < STEPS.length - 1) {
      const problems = check(step);
      if (problems.length) {
        for (const [name, message] of problems) setFieldError(form, name, message);
        focusFirst();
        return;
      }
      step += 1;
      draw();
      focusFirst();
      return;
    }
    await createAndDeploy(event.submitter || form.querySelector("button[type=submit]"));
  });

  async function createAndDeploy(button) {
    button.disabled = true;
    clearBanner();
    const definition = {
      name: state.name.trim(), version: state.version.trim(), contextPath: state.contextPath.trim(),
      backend: state.backend.trim(), plans: [{ name: state.planName.trim(), security: state.security }],
    };
    if (state.description.trim()) definition.description = state.description.trim();
    let created;
    try {
      created = await api.create(definition);
    } catch (e) {
      button.disabled = false;
      const target = validate.stepOf(e.field);
      if (target !== null) {
        step = target;
        pendingError = { field: e.field, message: e.message };
        draw();
        focusFirst();
      }
      showBanner(e.describe("Creating the API"));
      return;
    }
    try {
      const deployed = await api.action(created.id, "deploy");
      carry(`Created and deployed: ${deployed.name} ${deployed.version} is live. MCP clients connect to ${clientUrl(deployed, info)}.`);
    } catch (e) {
      carry(`The API was created but not deployed: ${e.describe()}. Fix the problem, then Deploy.`, "error");
    }
    navigate(`#/apis/${encodeURIComponent(created.id)}`);
  }

  draw();
  return null;
}
