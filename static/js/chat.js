// The direct chat tab: one chosen model, several turns, a thumbs up or down per answer, the
// latest answer asked again (Regenerate); images attached to any prompt when the model reads them.
//
// Model output is untrusted: it only ever reaches the page through markdown.js (DOM nodes and
// textContent) or textContent itself. Nothing in this file assigns innerHTML.

import { ApiError, api, readStream } from "./api.js";
import { imageAttacher, thumbnails } from "./attachments.js";
import { answerContent, copyCodeOnClick } from "./markdown.js";
import { promptForm } from "./prompt_form.js";

const STORAGE_KEY = "arena.chat";
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 3000, 5000];
const RECONNECT_GIVE_UP_MS = 180_000;

const root = document.getElementById("chat");
const form = document.getElementById("chat-form");
const promptBox = document.getElementById("chat-prompt");
const sendButton = document.getElementById("chat-send");
const countLabel = document.getElementById("chat-count");
const notice = document.getElementById("chat-notice");
const statusLine = document.getElementById("chat-status");
const modelPick = document.getElementById("chat-pick");
const modelSelect = document.getElementById("chat-model");
const side = document.getElementById("chat-side");
const thread = document.getElementById("chat-thread");
const decide = document.getElementById("chat-decide");
const newChatButton = document.getElementById("new-chat");
const regenerateButton = document.getElementById("chat-regenerate");
const maxPrompt = Number(root.dataset.maxPrompt) || 8000;

// state: idle | starting | streaming | ready | failed | withheld | lost
// readsImages: whether the open chat's model reads images (from the chat's view)
const chat = { id: null, state: "idle", turns: [], controller: null, readsImages: false };

// Before a chat starts, the model picker's choice says (modes.js marks each option from
// /api/sampling); after, the chat's own model.
function takesImages() {
  if (chat.id !== null) return chat.readsImages;
  const chosen = modelSelect.selectedOptions[0];
  return Boolean(chosen && chosen.dataset.supportsImages === "true");
}

const attacher = imageAttacher({
  root,
  prefix: "chat-",
  form,
  promptBox,
  accepting: takesImages,
  notify: showNotice,
});

function remember(chatId) {
  try {
    if (chatId) sessionStorage.setItem(STORAGE_KEY, chatId);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage switched off: a reload starts afresh
  }
}

function remembered() {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

const STATUS_TEXT = {
  starting: "Starting the chat…",
  streaming: "The model is answering…",
  ready: "Ask a follow-up, rate the answer, or regenerate it.",
  failed: "The answer failed, so this chat cannot go on. Start a new chat.",
  withheld: "The arena's moderation withheld the answer, so this chat cannot go on. Start a new chat.",
  lost: "This chat cannot go on. Start a new chat.",
};

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = !message;
  if (message) notice.scrollIntoView({ block: "nearest" });
}

function setState(state) {
  chat.state = state;
  root.dataset.state = state;
  const started = chat.id !== null;
  side.hidden = !started;
  decide.hidden = !started;
  modelPick.hidden = started;
  document.getElementById("chat-intro").hidden = started;
  statusLine.textContent = STATUS_TEXT[state] || "";
  const busy = state === "starting" || state === "streaming";
  regenerateButton.hidden = state !== "ready";
  form.hidden = state === "failed" || state === "withheld" || state === "lost";
  promptBox.disabled = busy;
  sendButton.disabled = busy;
  modelSelect.disabled = busy;
  sendButton.textContent = started ? "Send follow-up" : "Send";
  attacher.show(takesImages());
  thread.setAttribute("aria-busy", String(state === "streaming"));
}

function showModel(model) {
  const link = document.createElement("a");
  link.href = `/models/${encodeURIComponent(model.name)}`;
  link.textContent = model.name;
  document.getElementById("chat-model-name").replaceChildren(link);
  document.getElementById("chat-model-org").textContent = model.organization ? ` · ${model.organization}` : "";
}

// ------------------------------------------------------------------ rendering

function thumbsFor(turn) {
  const bar = document.createElement("div");
  bar.className = "thumbs";
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", `Rate answer ${turn.number}`);
  bar.hidden = true;
  for (const [rating, label, symbol] of [
    ["up", "Good answer", "✓ Good"],
    ["down", "Bad answer", "✗ Bad"],
  ]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.dataset.rating = rating;
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", label);
    button.title = label;
    button.textContent = symbol;
    button.addEventListener("click", () => rate(turn, rating));
    bar.append(button);
  }
  return bar;
}

// `images`: the data URLs sent with the prompt, or after a reload only how many there were.
function newTurn(prompt, number, images = []) {
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
  if (typeof images === "number") {
    if (images > 0) {
      const note = document.createElement("p");
      note.className = "asked-note hint";
      note.textContent = images === 1 ? "1 image attached" : `${images} images attached`;
      asked.append(note);
    }
  } else if (images.length) {
    asked.append(thumbnails(images));
  }
  const answer = document.createElement("div");
  answer.className = "answer md";
  const turn = { number, text: "", error: null, finish: null, withheld: false, node: answer, rating: null };
  turn.thumbs = thumbsFor(turn);
  box.append(asked, answer, turn.thumbs);
  thread.append(box);
  chat.turns.push(turn);
  return turn;
}

function render(turn) {
  const content = answerContent(turn);
  turn.node.replaceChildren(content);
  turn.node.classList.toggle("is-streaming", !turn.error && turn.finish === null);
  turn.thumbs.hidden = Boolean(turn.error) || turn.finish === null;
  for (const button of turn.thumbs.querySelectorAll(".thumb")) {
    button.setAttribute("aria-pressed", String(button.dataset.rating === turn.rating));
  }
}

let frame = 0;
function renderSoon(turn) {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    render(turn);
  });
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
  chat.controller = controller;
  const path = `/api/chats/${encodeURIComponent(chat.id)}/stream`;
  setState("streaming");
  const started = Date.now();
  for (let attempt = 0; ; attempt += 1) {
    Object.assign(turn, { text: "", error: null, finish: null, withheld: false });
    let endStatus = null;
    const onEvent = (event) => {
      if (event.type === "end") {
        endStatus = event.status;
        return;
      }
      if (event.type === "delta" && typeof event.text === "string") turn.text += event.text;
      else if (event.type === "done") turn.finish = event.finish_reason || "stop";
      else if (event.type === "error") turn.error = String(event.message || "This answer failed.");
      else if (event.type === "withheld") {
        // Moderation withheld the answer once it was in: its text is taken off the page.
        Object.assign(turn, { text: "", withheld: true });
        turn.error = String(event.message || "This answer was withheld.");
      }
      renderSoon(turn);
    };
    let ended;
    try {
      ended = await readStream(path, onEvent, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
      if (!(error instanceof ApiError) || error.status !== 409) {
        render(turn);
        showNotice(error.message);
        setState("lost");
        return;
      }
      ended = false;
    }
    if (controller.signal.aborted) return;
    if (ended) {
      render(turn);
      showNotice("");
      setState(endStatus === "ready" ? "ready" : turn.withheld ? "withheld" : "failed");
      if (endStatus === "ready") promptBox.focus();
      return;
    }
    if (Date.now() - started > RECONNECT_GIVE_UP_MS) {
      render(turn);
      showNotice("The connection to the arena was lost before the answer finished.");
      setState("lost");
      return;
    }
    showNotice("The connection dropped; picking the answer up again…");
    await sleep(RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)], controller.signal);
    if (controller.signal.aborted) return;
  }
}

async function send() {
  const prompt = promptBox.value;
  if (!chat.id && !modelSelect.value) {
    showNotice("Choose a model first.");
    modelSelect.focus();
    return;
  }
  if (!prompt.trim()) {
    showNotice("Type a message first: a question or a task for the model.");
    promptBox.focus();
    return;
  }
  if (prompt.length > maxPrompt) {
    showNotice(`The message is too long: ${prompt.length} characters, at most ${maxPrompt}.`);
    return;
  }
  showNotice("");
  const first = chat.id === null;
  const previous = chat.state;
  const readsImages = takesImages();
  const images = readsImages ? attacher.images() : [];
  const request = images.length ? { prompt, images } : { prompt };
  setState("starting");
  try {
    if (first) {
      const created = await api("POST", "/api/chats", { model: modelSelect.value, ...request });
      chat.id = created.chat_id;
      chat.readsImages = readsImages;
      remember(chat.id);
      showModel({ name: modelSelect.value, organization: "" });
    } else {
      await api("POST", `/api/chats/${encodeURIComponent(chat.id)}/turns`, request);
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
  const turn = newTurn(prompt, chat.turns.length + 1, images);
  render(turn);
  await streamTurn(turn);
}

// The latest answer is asked again: its text and its thumbs give way to the new answer's, in place.
async function regenerate() {
  if (chat.state !== "ready" || !chat.turns.length) return;
  const turn = chat.turns[chat.turns.length - 1];
  showNotice("");
  setState("starting");
  try {
    await api("POST", `/api/chats/${encodeURIComponent(chat.id)}/regenerate`);
  } catch (error) {
    showNotice(error.message);
    setState("ready");
    return;
  }
  Object.assign(turn, { text: "", error: null, finish: null, withheld: false, rating: null });
  render(turn);
  await streamTurn(turn);
}

async function rate(turn, rating) {
  if (!chat.id) return;
  try {
    await api("POST", `/api/chats/${encodeURIComponent(chat.id)}/feedback`, { turn: turn.number, rating });
  } catch (error) {
    showNotice(error.message);
    return;
  }
  turn.rating = rating;
  render(turn);
  statusLine.textContent = "Thanks! The model's owner sees your rating.";
}

function clearChat() {
  if (chat.controller) chat.controller.abort();
  Object.assign(chat, { id: null, turns: [], controller: null, readsImages: false });
  attacher.clear();
  remember(null);
  thread.replaceChildren();
  showNotice("");
}

// A reload keeps the chat: the server still has it, and the answer may still be coming.
async function restore() {
  const saved = remembered();
  if (!saved) return;
  let view;
  try {
    view = await api("GET", `/api/chats/${encodeURIComponent(saved)}`);
  } catch {
    remember(null);
    return;
  }
  chat.id = view.chat_id;
  chat.readsImages = Boolean(view.model.supports_images);
  showModel(view.model);
  let last = null;
  for (const message of view.messages) {
    if (message.role === "user") {
      last = newTurn(message.content, message.turn, message.image_count || 0);
    } else if (last) {
      Object.assign(last, {
        text: message.content,
        error: message.error,
        finish: message.error ? null : message.finish_reason || "stop",
        withheld: Boolean(message.withheld),
        rating: message.feedback,
      });
      render(last);
    }
  }
  if ((view.status === "pending" || view.status === "streaming") && last) {
    render(last);
    await streamTurn(last);
  } else {
    setState(view.status === "ready" ? "ready" : last && last.withheld ? "withheld" : "failed");
  }
}

const updateCount = promptForm({ form, promptBox, sendButton, countLabel, maxPrompt, send });

// A model that reads no images takes none: what was attached for another goes.
function modelChosen() {
  if (chat.id !== null) return;
  if (!takesImages()) attacher.clear();
  attacher.show(takesImages());
}

modelSelect.addEventListener("change", modelChosen);
document.addEventListener("arena:models", modelChosen);

regenerateButton.addEventListener("click", regenerate);

newChatButton.addEventListener("click", () => {
  clearChat();
  setState("idle");
  promptBox.value = "";
  updateCount();
  modelSelect.focus();
});

copyCodeOnClick(thread);

if (/Mac|iPhone|iPad/.test(navigator.platform)) {
  const key = document.querySelector("#chat-hint kbd");
  if (key) key.textContent = "⌘";
}

updateCount();
setState("idle");
restore();
