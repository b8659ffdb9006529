// My battles: the visitor's own battles, each with a link to reopen it and a button to delete it.
//
// Prompts are the visitor's own text, shown through textContent only; names appear only for
// battles the visitor has voted on (the server sends none before).

const list = document.getElementById("mine-list");
const statusLine = document.getElementById("mine-status");
const root = document.getElementById("mine");

const STATUS_TEXT = {
  pending: "Waiting for the answers",
  streaming: "Answering",
  ready: "Answered, not voted",
  failed: "An answer failed",
  voted: "Voted",
};

const WINNER_TEXT = {
  model_a: "you picked A",
  model_b: "you picked B",
  tie: "a tie",
  "tie (bothbad)": "both bad",
};

function detailOf(response, data) {
  if (data && typeof data.detail === "string") return data.detail;
  return `The server answered with status ${response.status}. Please try again.`;
}

async function api(method, path) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new Error("The arena could not be reached. Check your connection and try again.");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(detailOf(response, data));
  return data;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function describe(battle) {
  if (battle.erased_at) return `Deleted ${when(battle.erased_at)}`;
  if (battle.status === "voted") {
    const names = battle.models
      ? ` · A: ${battle.models.model_a.name}, B: ${battle.models.model_b.name}`
      : "";
    return `Voted, ${WINNER_TEXT[battle.winner] || battle.winner}${names}`;
  }
  if (battle.closed) return "Closed without a vote";
  return STATUS_TEXT[battle.status] || battle.status;
}

function entry(battle) {
  const item = document.createElement("li");
  item.className = "mine-entry";
  item.dataset.battleId = battle.battle_id;
  item.dataset.erased = String(Boolean(battle.erased_at));

  const head = document.createElement("p");
  head.className = "mine-head";
  const date = document.createElement("time");
  date.className = "mine-date";
  date.dateTime = battle.created_at;
  date.textContent = when(battle.created_at);
  const state = document.createElement("span");
  state.className = "mine-state";
  state.textContent = describe(battle);
  head.append(date, " · ", state);

  const prompt = document.createElement("p");
  prompt.className = "mine-prompt";
  prompt.textContent = battle.erased_at ? "(erased)" : battle.prompt;

  const actions = document.createElement("p");
  actions.className = "mine-actions";
  const open = document.createElement("a");
  open.className = "mine-open";
  open.href = `/?battle=${encodeURIComponent(battle.battle_id)}`;
  open.textContent = "Open";
  const id = document.createElement("code");
  id.className = "mine-id";
  id.textContent = battle.battle_id;
  actions.append(open, " · id ", id);
  if (!battle.erased_at) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "mine-delete";
    remove.textContent = "Delete";
    remove.addEventListener("click", () => erase(battle, remove));
    actions.append(" ", remove);
  }
  item.append(head, prompt, actions);
  return item;
}

async function erase(battle, button) {
  if (!window.confirm("Delete this battle? Its prompts and answers are erased for good; your vote, if any, stays counted without text.")) return;
  button.disabled = true;
  try {
    await api("DELETE", `/api/battles/${encodeURIComponent(battle.battle_id)}`);
  } catch (error) {
    statusLine.textContent = error.message;
    button.disabled = false;
    return;
  }
  statusLine.textContent = "The battle was deleted: its texts are erased.";
  await load();
}

async function load() {
  let data;
  try {
    data = await api("GET", "/api/me/battles");
  } catch (error) {
    statusLine.textContent = error.message;
    root.dataset.state = "error";
    return;
  }
  list.replaceChildren(...data.battles.map(entry));
  if (!data.battles.length) statusLine.textContent = "No battles in this browser yet.";
  else if (statusLine.textContent.startsWith("Loading")) statusLine.textContent = "";
  root.dataset.state = "loaded";
  return data.counted_votes;
}

// The personal leaderboard: from 20 counted votes on; until then, how many are still needed.
const boardStatus = document.getElementById("my-board-status");
const boardTable = document.getElementById("my-board-table");
const boardRows = document.getElementById("my-board-rows");

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

// Below MIN_PERSONAL_VOTES the board is not asked for (the server would answer 409): the list
// says how many votes count already.
const MIN_PERSONAL_VOTES = 20;

function notYet(counted) {
  const needed = MIN_PERSONAL_VOTES - counted;
  boardStatus.textContent =
    `Your own leaderboard appears once ${MIN_PERSONAL_VOTES} of your votes count: ` +
    `${needed} more to go (you have ${counted}).`;
  boardTable.hidden = true;
}

async function loadBoard(counted) {
  if (typeof counted === "number" && counted < MIN_PERSONAL_VOTES) {
    notYet(counted);
    return;
  }
  let response;
  let data;
  try {
    response = await fetch("/api/me/leaderboard", {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
    data = await response.json().catch(() => null);
  } catch {
    boardStatus.textContent = "The arena could not be reached. Check your connection and try again.";
    return;
  }
  if (response.status === 409 && data && typeof data.counted_votes === "number") {
    notYet(data.counted_votes);
    return;
  }
  if (!response.ok || !data) {
    boardStatus.textContent = detailOf(response, data);
    return;
  }
  boardRows.replaceChildren(
    ...data.models.map((row, index) => {
      const tr = document.createElement("tr");
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = row.model;
      tr.append(
        cell(String(index + 1)),
        name,
        cell(row.rating.toFixed(0)),
        cell(row.public_rating === null ? "not rated yet" : row.public_rating.toFixed(0)),
        cell(String(row.votes)),
        cell(`${row.wins} / ${row.losses} / ${row.ties}`),
      );
      return tr;
    }),
  );
  boardStatus.textContent = `From your ${data.counted_votes} counted votes.`;
  boardTable.hidden = false;
}

load().then(loadBoard);
