// The /owner page: sign in with an owner token, register and test endpoints, read their stats.
//
// The token lives in sessionStorage (this tab only) and travels in an Authorization header that
// a browser never attaches by itself, so another site cannot make requests on the owner's behalf
// (no CSRF by construction); requests go with `credentials: "omit"`, so no cookie is sent either.
// Everything from the server is put in the page with textContent, never parsed as HTML.

const TOKEN_KEY = "arena.ownerToken";

const $ = (selector, root = document) => root.querySelector(selector);

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `The server answered ${status}.`);
    this.status = status;
    this.body = body || {};
  }
}

function ownerToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = ownerToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function notice(message) {
  const box = $("#owner-notice");
  box.textContent = message || "";
  box.hidden = !message;
}

// ------------------------------------------------------------------ forms and field errors

function clearErrors(form) {
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showErrors(form, error) {
  // Validation errors come as a list of {field, message}; service errors as "field: message".
  const list = Array.isArray(error.body.errors) ? error.body.errors : [];
  const pairs = list.map((e) => [e.field, e.message]);
  if (!pairs.length && typeof error.body.detail === "string") {
    const match = /^([a-z_]+): (.*)$/s.exec(error.body.detail);
    if (match) pairs.push([match[1], match[2]]);
  }
  let placed = false;
  for (const [field, message] of pairs) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (!slot) continue;
    slot.textContent = message;
    if (input) input.setAttribute("aria-invalid", "true");
    placed = true;
  }
  return placed;
}

function formValues(form) {
  const values = {};
  for (const input of form.querySelectorAll("input[name], textarea[name]")) {
    const raw = input.value;
    if (input.dataset.number === "int") values[input.name] = raw === "" ? undefined : Number.parseInt(raw, 10);
    else if (input.dataset.number === "float") values[input.name] = raw === "" ? undefined : Number.parseFloat(raw);
    else values[input.name] = raw;
  }
  return values;
}

// ------------------------------------------------------------------ signed out

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    const me = await api("GET", "/api/owners/me");
    showSignedIn(me);
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw error;
  }
}

function bindSignedOut() {
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    notice("");
    const token = $("#signin-token").value.trim();
    if (!token) {
      notice("Paste your owner token to sign in.");
      return;
    }
    try {
      await signIn(token);
      $("#signin-token").value = "";
    } catch (error) {
      notice(error.message);
    }
  });

  const signup = $("#signup-form");
  signup.addEventListener("submit", async (event) => {
    event.preventDefault();
    notice("");
    clearErrors(signup);
    const values = formValues(signup);
    if (!values.invite_code) delete values.invite_code;
    try {
      const created = await api("POST", "/api/owners", values);
      signup.reset();
      $("#new-token-value").textContent = created.token;
      $("#new-token").hidden = false;
      await signIn(created.token);
    } catch (error) {
      if (!(error instanceof ApiError) || !showErrors(signup, error)) notice(error.message);
    }
  });

  $("#new-token-done").addEventListener("click", () => {
    $("#new-token-value").textContent = "";
    $("#new-token").hidden = true;
  });
}

// ------------------------------------------------------------------ signed in

function showSignedIn(me) {
  $("#owner-name").textContent = me.name;
  $("#owner-email").textContent = me.email;
  $("#signed-out").hidden = true;
  $("#signed-in").hidden = false;
  loadModels();
  loadWebhook();
}

// ------------------------------------------------------------------ webhook

function deliveryText(d) {
  if (d.delivered_at) return `delivered after ${d.attempts} attempt(s)`;
  if (d.given_up_at) return `given up after ${d.attempts} attempts: ${d.last_error}`;
  return `${d.attempts} attempt(s) so far${d.last_error ? `: ${d.last_error}` : ""}`;
}

async function loadWebhook() {
  try {
    const hook = await api("GET", "/api/owners/me/webhook");
    $("#webhook-url").textContent = hook.url || "none";
    const list = $("#webhook-deliveries");
    list.replaceChildren();
    for (const d of hook.deliveries) {
      list.append(el("li", `${d.event}, ${d.payload.model}: ${deliveryText(d)}`));
    }
  } catch (error) {
    if (error.status === 401) showSignedOut();
  }
}

function bindWebhook() {
  const form = $("#webhook-form");
  const error = $("#webhook-error");
  const result = $("#webhook-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    result.textContent = "";
    try {
      const set = await api("PUT", "/api/owners/me/webhook", { url: $("#webhook-input").value });
      result.textContent = `Set. Its signing secret, shown this once: ${set.secret}`;
      form.reset();
      await loadWebhook();
    } catch (failure) {
      if (failure.status === 401) showSignedOut();
      error.textContent = failure.message;
    }
  });
  $("#webhook-remove").addEventListener("click", async () => {
    error.textContent = "";
    try {
      await api("DELETE", "/api/owners/me/webhook");
      result.textContent = "The webhook is removed.";
      await loadWebhook();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
}

function showSignedOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  $("#signed-in").hidden = true;
  $("#signed-out").hidden = false;
  $("#stats").hidden = true;
}

function actionResult(message) {
  $("#action-result").textContent = message;
}

function probeText(probe) {
  if (!probe) return "";
  if (!probe.ok) return `Test failed: ${probe.field ? `${probe.field}: ` : ""}${probe.reason}`;
  const first = probe.first_token_ms == null ? "" : `, first token after ${Math.round(probe.first_token_ms)} ms`;
  return `Test passed in ${Math.round(probe.latency_ms)} ms${first}: “${probe.sample}”`;
}

async function act(model, action) {
  actionResult("");
  try {
    if (action === "test") {
      actionResult(`Testing ${model.name}…`);
      const probe = await api("POST", `/api/models/${encodeURIComponent(model.name)}/test`);
      actionResult(`${model.name}: ${probeText(probe)}`);
      return;
    }
    if (action === "stats") {
      await showStats(model.name);
      return;
    }
    if (action === "retire" && !window.confirm(`Retire ${model.name} for good? A retired model never competes again.`)) {
      return;
    }
    const answer = await api("POST", `/api/models/${encodeURIComponent(model.name)}/${action}`);
    // Pause and retire answer the model itself, whose `model` is the upstream model id (text);
    // resume answers {model: the model, probe}.
    const changed = typeof answer.model === "object" && answer.model !== null ? answer.model : answer;
    actionResult(`${model.name} is now ${changed.status}. ${probeText(answer.probe)}`.trim());
    await loadModels();
  } catch (error) {
    if (error.status === 401) showSignedOut();
    actionResult(`${model.name}: ${error.message}`);
  }
}

const ACTIONS = {
  active: ["test", "pause", "retire", "stats"],
  paused: ["test", "resume", "retire", "stats"],
  pending: ["test", "retire", "stats"],
  retired: ["stats"],
};

async function loadModels() {
  let models;
  try {
    models = await api("GET", "/api/models/mine");
  } catch (error) {
    if (error.status === 401) showSignedOut();
    notice(error.message);
    return;
  }
  const table = $("#models-table");
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const model of models) {
    const row = document.createElement("tr");
    row.dataset.model = model.name;
    row.append(
      el("td", model.name),
      el("td", model.status, `status status-${model.status}`),
      el("td", model.status_reason),
      el("td", `${model.base_url} · ${model.model}`, "endpoint"),
      el("td", model.api_key_last4 ? `…${model.api_key_last4}` : model.has_api_key ? "set" : "none"),
    );
    const cell = el("td", null, "actions");
    for (const action of ACTIONS[model.status] || []) {
      const button = el("button", action[0].toUpperCase() + action.slice(1));
      button.type = "button";
      button.dataset.action = action;
      button.addEventListener("click", () => act(model, action));
      cell.append(button);
    }
    row.append(cell);
    body.append(row);
  }
  table.hidden = models.length === 0;
  $("#no-models").hidden = models.length !== 0;
}

function percent(value) {
  return value == null ? "–" : `${(value * 100).toFixed(1)}%`;
}

function millis(p) {
  return p.samples ? `p50 ${p.p50} · p90 ${p.p90} · p99 ${p.p99} ms (${p.samples} answers)` : "–";
}

// Votes of battles whose visitor chose the models by name: kept apart, never rated.
function namedVotes(named) {
  if (!named || !named.votes) return "none (not in the rating)";
  return `${named.votes} (${named.wins} won, ${named.losses} lost, ${named.ties} ties, ${named.both_bad} both bad; not in the rating)`;
}

function chatFeedback(chats) {
  if (!chats || !chats.chats) return "none";
  return `${chats.chats} chat${chats.chats === 1 ? "" : "s"}: ${chats.up} thumbs up, ${chats.down} thumbs down`;
}

// Answers in direct chats, counted apart from the battles' answers below.
function chatAnswers(answers) {
  if (!answers || !answers.answers) return "none";
  const withheld = answers.withheld_answers ? `, ${answers.withheld_answers} withheld by moderation` : "";
  return `${percent(answers.error_rate)} (${answers.failed_answers} of ${answers.answers} answers failed${withheld})`;
}

async function showStats(name) {
  const stats = await api("GET", `/api/models/${encodeURIComponent(name)}/stats`);
  $("#stats-name").textContent = stats.name;
  const rating = stats.rating
    ? `${stats.rating.rating?.toFixed(0) ?? "–"} (95% CI ${stats.rating.ci_lower?.toFixed(0) ?? "–"} to ${stats.rating.ci_upper?.toFixed(0) ?? "–"}), rank ${stats.rating.rank ?? "–"}`
    : "not rated yet";
  const flagged = Object.entries(stats.flagged_votes).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
  const rows = [
    ["Status", `${stats.status}${stats.status_reason ? ` (${stats.status_reason})` : ""}`],
    ["Rating", rating],
    ["Votes", `${stats.votes} (${stats.counted_votes} counted, ${stats.excluded_votes} excluded)`],
    ["Win rate", `${percent(stats.win_rate)} (${stats.wins} won, ${stats.losses} lost, ${stats.ties} ties, ${stats.both_bad} both bad)`],
    ["Flagged votes", flagged],
    ["Side-by-side votes", namedVotes(stats.named_votes)],
    ["Direct chats", chatFeedback(stats.chat_feedback)],
    ["Chat error rate", chatAnswers(stats.chat_answers)],
    ["Battles", stats.battles],
    ["Error rate", `${percent(stats.error_rate)} (${stats.failed_answers} of ${stats.answers} answers)`],
    ["Failures in a row", `${stats.consecutive_failures} (paused automatically at ${stats.circuit_breaker_threshold || "never"})`],
    ["First token", millis(stats.first_token_ms)],
    ["Whole answer", millis(stats.answer_ms)],
    ["Share of battles", `${percent(stats.sampling_share_7d)} last 7 days, ${percent(stats.sampling_share_all)} overall`],
  ];
  const list = $("#stats-list");
  list.replaceChildren();
  for (const [term, value] of rows) list.append(el("dt", term), el("dd", value));
  const events = $("#events-table").tBodies[0];
  events.replaceChildren();
  for (const event of stats.events) {
    const row = document.createElement("tr");
    row.append(el("td", new Date(event.at).toLocaleString()), el("td", event.status), el("td", event.actor), el("td", event.reason));
    events.append(row);
  }
  const errors = $("#errors-list");
  errors.replaceChildren();
  for (const error of stats.recent_errors) {
    const where = error.source === "chat" ? " (direct chat)" : "";
    errors.append(el("li", `${new Date(error.at).toLocaleString()}${where}: ${error.error}`));
  }
  if (!stats.recent_errors.length) errors.append(el("li", "none"));
  $("#stats").hidden = false;
}

function bindSignedIn() {
  $("#signout").addEventListener("click", () => {
    showSignedOut();
    notice("");
  });
  const form = $("#register-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const result = $("#register-result");
    const values = formValues(form);
    for (const key of Object.keys(values)) if (values[key] === "" || values[key] === undefined) delete values[key];
    const button = $("#register-button");
    button.disabled = true;
    result.textContent = "Testing the endpoint…";
    try {
      const created = await api("POST", "/api/models", values);
      form.reset();
      result.textContent = `Registered ${created.name}: ${created.status}. ${probeText(created.probe)}`;
      await loadModels();
    } catch (error) {
      if (error.status === 401) showSignedOut();
      const placed = error instanceof ApiError && showErrors(form, error);
      result.textContent = placed ? "Not registered: see the fields marked above." : `Not registered: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
}

bindSignedOut();
bindSignedIn();
bindWebhook();
if (ownerToken()) {
  signIn(ownerToken()).catch(() => showSignedOut());
}
