// The battle page: start a battle, read both answers from one SSE stream, follow-ups, vote, reveal.
//
// Model output is untrusted: it only ever reaches the page through markdown.js (DOM nodes and
// textContent) or textContent itself. Nothing in this file assigns innerHTML.

import { ApiError, api, readStream } from "./api.js";
import { imageAttacher, thumbnails } from "./attachments.js";
import { answerContent, copyCodeOnClick } from "./markdown.js";
import { battleRequest } from "./modes.js";
import { promptForm } from "./prompt_form.js";

const STORAGE_KEY = "arena.battle";
const SIDES = ["a", "b"];
const RECONNECT_DELAYS_MS = [250, 1000, 2000, 3000, 5000];
const RECONNECT_GIVE_UP_MS = 180_000;

const root = document.getElementById("battle");
const form = document.getElementById("prompt-form");
const promptBox = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const countLabel = document.getElementById("prompt-count");
const notice = document.getElementById("notice");
const statusLine = document.getElementById("status");
const sidesBox = document.getElementById("sides");
const decideBox = document.getElementById("decide");
const newBattleButton = document.getElementById("new-battle");
const regenerateButton = document.getElementById("regenerate");
const shareButton = document.getElementById("share");
const sharedBox = document.getElementById("shared-link");
const sharedUrl = document.getElementById("shared-url");
const copySharedButton = document.getElementById("copy-shared");
const unshareButton = document.getElementById("unshare");
const voteButtons = [...document.querySelectorAll(".vote-button")];
const maxPrompt = Number(root.dataset.maxPrompt) || 8000;
const sideBoxes = Object.fromEntries(SIDES.map((side) => [side, document.getElementById(`side-${side}`)]));

// state: idle | starting | streaming | ready | failed | closed | voting | voted | lost
// mode: "anonymous", or "named" (side by side: the names are shown from the start)
const battle = { id: null, state: "idle", turns: [], controller: null, winner: null, mode: null, shareUrl: null };
// Images go with the first prompt only.
const attacher = imageAttacher({
  root,
  prefix: "",
  form,
  promptBox,
  accepting: () => battle.id === null,
  notify: showNotice,
});

// Storage can be switched off (private modes, strict settings): the page then just forgets.
function remember(battleId) {
  try {
    if (battleId) sessionStorage.setItem(STORAGE_KEY, battleId);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing to keep the battle in; a reload starts afresh
  }
}

function remembered() {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ rendering

function newTurn(prompt, images = []) {
  const turn = { prompt, answers: {} };
  for (const side of SIDES) {
    const box = document.createElement("section");
    box.className = "turn";
    const asked = document.createElement("div");
    asked.className = "asked";
    const who = document.createElement("span");
    who.className = "asked-label";
    who.textContent = "You";
    const words = document.createElement("p");
    words.className = "asked-text";
    words.textContent = prompt;
    asked.append(who, words);
    if (images.length) asked.append(thumbnails(images));
    const answer = document.createElement("div");
    answer.className = "answer md";
    box.append(asked, answer);
    sideBoxes[side].querySelector(".thread").append(box);
    turn.answers[side] = { text: "", error: null, finish: null, node: answer, dirty: false };
  }
  battle.turns.push(turn);
  return turn;
}

let frameRequested = false;
let renderCost = 0; // how long the last drawing took, in ms
let lastDrawnAt = 0;

function requestDraw() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(flushRenders);
}

function markDirty(answer) {
  answer.dirty = true;
  // One drawing per frame at most, however many deltas arrive in between.
  requestDraw();
}

function renderAnswer(answer) {
  answer.dirty = false;
  const content = answerContent(answer);
  answer.node.replaceChildren(content);
  answer.node.classList.toggle("is-streaming", !answer.error && answer.finish === null);
}

function flushRenders() {
  frameRequested = false;
  // A long answer takes long to redraw: then draw less often, so the page stays responsive.
  if (performance.now() - lastDrawnAt < renderCost * 4) {
    requestDraw();
    return;
  }
  const started = performance.now();
  for (const turn of battle.turns) {
    for (const side of SIDES) {
      if (turn.answers[side].dirty) renderAnswer(turn.answers[side]);
    }
  }
  lastDrawnAt = performance.now();
  renderCost = lastDrawnAt - started;
}

function renderAllNow() {
  for (const turn of battle.turns) for (const side of SIDES) renderAnswer(turn.answers[side]);
}

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = !message;
  if (message) notice.scrollIntoView({ block: "nearest" });
}

const STATUS_TEXT = {
  starting: "Starting a battle…",
  streaming: "The two models are answering…",
  ready: "Both answers are in. Which one is better? You can also ask a follow-up first.",
  failed: "One of the answers failed, so this battle cannot be voted on. Start a new battle.",
  closed: "This battle is closed: it no longer takes a vote or a follow-up. Start a new battle.",
  voting: "Recording your vote…",
  voted: "Thanks! Your vote is recorded. Here is who was behind each side.",
  "named-voted": "Thanks! Your vote is recorded, apart from the anonymous ratings.",
  lost: "This battle cannot go on. Start a new battle.",
  erased: "You deleted this battle: its prompts and answers are erased. Start a new battle.",
};

function setState(state) {
  battle.state = state;
  root.dataset.state = state;
  const started = battle.id !== null || battle.turns.length > 0;
  sidesBox.hidden = !started;
  decideBox.hidden = !started;
  document.getElementById("intro").hidden = started;
  statusLine.textContent = STATUS_TEXT[battle.mode === "named" ? `named-${state}` : state] || STATUS_TEXT[state] || "";
  for (const button of voteButtons) button.disabled = state !== "ready";
  regenerateButton.hidden = state !== "ready";
  shareButton.hidden = state !== "voted" || battle.shareUrl !== null;
  sharedBox.hidden = state !== "voted" || battle.shareUrl === null;
  const busy = state === "starting" || state === "streaming" || state === "voting";
  form.hidden = ["failed", "closed", "voted", "lost", "erased"].includes(state);
  promptBox.disabled = busy;
  sendButton.disabled = busy;
  sendButton.textContent = battle.id === null ? "Send" : "Send follow-up";
  attacher.show(battle.id === null);
  promptBox.placeholder = battle.id === null ? "Ask anything" : "Ask both models a follow-up, or vote above";
  for (const side of SIDES) {
    sideBoxes[side].querySelector(".thread").setAttribute("aria-busy", String(state === "streaming"));
  }
}

function showReveal(models, winner) {
  const verdicts = {
    model_a: { a: "Your pick", b: "" },
    model_b: { a: "", b: "Your pick" },
    tie: { a: "Tie", b: "Tie" },
    "tie (bothbad)": { a: "Both bad", b: "Both bad" },
  };
  for (const side of SIDES) {
    const box = sideBoxes[side];
    const model = models[`model_${side}`];
    // The names link to their model pages (/models/{name}, the name quoted as the server does).
    const link = document.createElement("a");
    link.href = `/models/${encodeURIComponent(model.name)}`;
    link.textContent = model.name;
    box.querySelector(".reveal-name").replaceChildren(link);
    box.querySelector(".reveal-org").textContent = model.organization ? ` · ${model.organization}` : "";
    box.querySelector(".reveal").hidden = false;
    const verdict = box.querySelector(".verdict");
    verdict.textContent = (verdicts[winner] || {})[side] || "";
    verdict.hidden = !verdict.textContent;
    box.classList.toggle("is-pick", winner === `model_${side}`);
  }
  for (const button of voteButtons) {
    button.classList.toggle("is-chosen", button.dataset.winner === winner);
    button.setAttribute("aria-pressed", String(button.dataset.winner === winner));
  }
}

function clearBattle() {
  if (battle.controller) battle.controller.abort();
  battle.controller = null;
  battle.id = null;
  battle.turns = [];
  battle.winner = null;
  battle.mode = null;
  battle.shareUrl = null;
  remember(null);
  for (const side of SIDES) {
    const box = sideBoxes[side];
    box.querySelector(".thread").replaceChildren();
    box.querySelector(".reveal").hidden = true;
    box.querySelector(".reveal-name").textContent = "";
    box.querySelector(".reveal-org").textContent = "";
    box.querySelector(".verdict").hidden = true;
    box.classList.remove("is-pick");
  }
  for (const button of voteButtons) {
    button.classList.remove("is-chosen");
    button.removeAttribute("aria-pressed");
  }
  showNotice("");
}

// ------------------------------------------------------------------ the flow

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function streamTurn(turn) {
  const controller = new AbortController();
  battle.controller = controller;
  const battleId = battle.id;
  setState("streaming");
  const started = Date.now();
  for (let attempt = 0; ; attempt += 1) {
    // A reconnect replays the whole turn from its first token: each attempt starts from empty
    // answers, but only once its first event is in, so the text on screen never blinks away.
    let fresh = true;
    let endStatus = null;
    const onEvent = (event) => {
      if (fresh) {
        fresh = false;
        for (const side of SIDES) {
          Object.assign(turn.answers[side], { text: "", error: null, finish: null });
          markDirty(turn.answers[side]);
        }
      }
      if (event.type === "end") {
        endStatus = event.status;
        return;
      }
      const answer = turn.answers[event.side];
      if (!answer) return;
      if (event.type === "delta" && typeof event.text === "string") answer.text += event.text;
      else if (event.type === "done") answer.finish = event.finish_reason || "stop";
      else if (event.type === "error") answer.error = String(event.message || "This answer failed.");
      else if (event.type === "withheld") {
        // Moderation withheld the answers once they were in: their text is taken off the page.
        answer.text = "";
        answer.error = String(event.message || "This answer was withheld.");
      }
      markDirty(answer);
    };
    let ended;
    try {
      ended = await readStream(`/api/battles/${encodeURIComponent(battleId)}/stream`, onEvent, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
      // 409: the turn is still running server-side (an earlier connection); wait and replay it.
      if (!(error instanceof ApiError) || error.status !== 409) {
        renderAllNow();
        showNotice(error.message);
        setState("lost");
        return;
      }
      ended = false;
    }
    if (controller.signal.aborted) return;
    if (ended) {
      renderAllNow();
      showNotice("");
      setState(endStatus === "ready" ? "ready" : "failed");
      if (battle.state === "ready") focusVote();
      return;
    }
    if (Date.now() - started > RECONNECT_GIVE_UP_MS) {
      renderAllNow();
      showNotice("The connection to the arena was lost before the answers finished.");
      setState("lost");
      return;
    }
    // One quick retry goes unannounced: a reload or a proxy's cut usually heals at once.
    if (attempt > 0) showNotice("The connection dropped; picking the answers up again…");
    await sleep(RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)], controller.signal);
    if (controller.signal.aborted) return;
  }
}

// When the answers are in, the vote is next: focus it without scrolling the answers away.
function focusVote() {
  const active = document.activeElement;
  // Someone already typing a follow-up keeps their place.
  if (active === promptBox && promptBox.value) return;
  voteButtons[0].focus({ preventScroll: true });
}

async function regenerate() {
  if (battle.state !== "ready") return;
  const turn = battle.turns[battle.turns.length - 1];
  showNotice("");
  setState("starting");
  try {
    await api("POST", `/api/battles/${encodeURIComponent(battle.id)}/regenerate`);
  } catch (error) {
    showNotice(error.message);
    if (error.status === 409) await settleFromServer();
    else setState("ready");
    return;
  }
  for (const side of SIDES) Object.assign(turn.answers[side], { text: "", error: null, finish: null });
  renderAllNow();
  await streamTurn(turn);
}

function showShared(url) {
  battle.shareUrl = url;
  sharedUrl.value = url || "";
  setState(battle.state);
}

async function share() {
  try {
    const shared = await api("POST", `/api/battles/${encodeURIComponent(battle.id)}/share`);
    showShared(shared.url);
    sharedUrl.focus();
    sharedUrl.select();
  } catch (error) {
    showNotice(error.message);
  }
}

async function unshare() {
  try {
    await api("DELETE", `/api/battles/${encodeURIComponent(battle.id)}/share`);
    showShared(null);
    showNotice("");
    shareButton.focus();
  } catch (error) {
    showNotice(error.message);
  }
}

async function send() {
  const prompt = promptBox.value;
  if (!prompt.trim()) {
    showNotice("Type a prompt first: a question or a task for the two models.");
    promptBox.focus();
    return;
  }
  if (prompt.length > maxPrompt) {
    showNotice(`The prompt is too long: ${prompt.length} characters, at most ${maxPrompt}.`);
    return;
  }
  showNotice("");
  const first = battle.id === null;
  const previous = battle.state;
  const images = first ? attacher.images() : [];
  setState("starting");
  try {
    if (first) {
      const request = battleRequest(prompt);
      if (images.length) request.images = images;
      const created = await api("POST", "/api/battles", request);
      battle.id = created.battle_id;
      battle.mode = request.mode || "anonymous";
      remember(battle.id);
      if (battle.mode === "named") await showChosenNames();
    } else {
      await api("POST", `/api/battles/${encodeURIComponent(battle.id)}/turns`, { prompt });
    }
  } catch (error) {
    showNotice(error.message);
    setState(first ? "idle" : previous);
    promptBox.focus();
    return;
  }
  promptBox.value = "";
  updateCount();
  attacher.clear();
  const turn = newTurn(prompt, images);
  renderAllNow();
  await streamTurn(turn);
}

async function vote(winner) {
  if (battle.state !== "ready") return;
  showNotice("");
  setState("voting");
  let reveal;
  try {
    reveal = await api("POST", `/api/battles/${encodeURIComponent(battle.id)}/vote`, { winner });
  } catch (error) {
    showNotice(error.message);
    if (error.status === 409) await settleFromServer();
    else setState(error.status === 403 || error.status === 404 ? "lost" : "ready");
    return;
  }
  battle.winner = winner;
  setState("voted");
  showReveal(reveal, winner);
  newBattleButton.focus();
}

// A side-by-side battle names its models from the start: its view says who they are.
async function showChosenNames() {
  try {
    const view = await api("GET", `/api/battles/${encodeURIComponent(battle.id)}`);
    if (view.models) showReveal(view.models, null);
  } catch {
    // the names come with the vote's answer anyway
  }
}

// A battle the server says is over but not voted: failed, or closed past its vote window.
function settledState(view) {
  if (view.erased_at) return "erased";
  if (view.status !== "ready") return "failed";
  return view.closed ? "closed" : "ready";
}

// After a refused vote, the server knows best: voted elsewhere, failed, closed, or still votable.
async function settleFromServer() {
  let view;
  try {
    view = await api("GET", `/api/battles/${encodeURIComponent(battle.id)}`);
  } catch {
    setState("lost");
    return;
  }
  if (view.status === "voted" && view.models) {
    battle.winner = view.winner;
    setState("voted");
    showReveal(view.models, view.winner);
    if (view.erased_at) statusLine.textContent = STATUS_TEXT.erased;
  } else {
    setState(settledState(view));
  }
}

// A battle opened from My battles (?battle=ID): kept like one started here, and the address
// cleaned, so that "New battle" and a reload behave as usual.
function openedFromList() {
  const params = new URLSearchParams(window.location.search);
  const battleId = params.get("battle");
  if (!battleId) return null;
  params.delete("battle");
  const query = params.toString();
  history.replaceState(null, "", window.location.pathname + (query ? `?${query}` : ""));
  remember(battleId);
  return battleId;
}

// A reload keeps the battle: the server still has it, and the turn may still be running.
async function restore() {
  const saved = openedFromList() || remembered();
  if (!saved) return;
  let view;
  try {
    view = await api("GET", `/api/battles/${encodeURIComponent(saved)}`);
  } catch {
    remember(null);
    return;
  }
  battle.id = view.battle_id;
  battle.mode = view.mode || "anonymous";
  document.dispatchEvent(new CustomEvent("arena:battle-mode", { detail: battle.mode }));
  const byTurn = new Map();
  for (const message of view.messages) {
    if (!byTurn.has(message.turn)) byTurn.set(message.turn, {});
    byTurn.get(message.turn)[message.side] = message;
  }
  let last = null;
  for (const turnNumber of [...byTurn.keys()].sort((x, y) => x - y)) {
    const messages = byTurn.get(turnNumber);
    // An erased battle keeps its turns, not their words.
    const erased = view.erased_at ? "(erased)" : null;
    last = newTurn(erased || (messages.user ? messages.user.content : ""));
    for (const side of SIDES) {
      const message = messages[side];
      if (!message) continue;
      Object.assign(last.answers[side], {
        text: erased || message.content,
        error: message.error,
        finish: message.error ? null : message.finish_reason || "stop",
      });
    }
  }
  renderAllNow();
  if (battle.mode === "named" && view.models) showReveal(view.models, view.winner);
  if (view.erased_at && !(view.status === "voted" && view.models)) {
    setState("erased");
  } else if ((view.status === "pending" || view.status === "streaming") && last) {
    await streamTurn(last);
  } else if (view.status === "voted" && view.models) {
    battle.winner = view.winner;
    battle.shareUrl = view.share_path ? new URL(view.share_path, window.location.href).href : null;
    sharedUrl.value = battle.shareUrl || "";
    setState("voted");
    showReveal(view.models, view.winner);
    if (view.erased_at) statusLine.textContent = STATUS_TEXT.erased;
  } else {
    setState(settledState(view));
  }
}

const updateCount = promptForm({ form, promptBox, sendButton, countLabel, maxPrompt, send });

for (const button of voteButtons) {
  button.addEventListener("click", () => vote(button.dataset.winner));
}

regenerateButton.addEventListener("click", regenerate);
shareButton.addEventListener("click", share);
unshareButton.addEventListener("click", unshare);
copySharedButton.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(sharedUrl.value);
    copySharedButton.textContent = "Copied";
  } catch {
    sharedUrl.select();
    copySharedButton.textContent = "Press Ctrl+C";
  }
  setTimeout(() => {
    copySharedButton.textContent = "Copy";
  }, 1500);
});

// Keys 1 to 4 vote, as on the buttons, unless the visitor is typing.
const VOTE_KEYS = Object.fromEntries(voteButtons.map((button) => [button.dataset.key, button.dataset.winner]));
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const winner = VOTE_KEYS[event.key];
  if (!winner || battle.state !== "ready") return;
  const target = event.target;
  if (target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  event.preventDefault();
  vote(winner);
});

newBattleButton.addEventListener("click", () => {
  clearBattle();
  attacher.clear();
  setState("idle");
  promptBox.value = "";
  updateCount();
  promptBox.focus();
});

copyCodeOnClick(sidesBox);

if (/Mac|iPhone|iPad/.test(navigator.platform)) {
  const key = document.querySelector("#prompt-hint kbd");
  if (key) key.textContent = "⌘";
}

updateCount();
setState("idle");
restore();
