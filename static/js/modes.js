// The battle page's three modes as tabs of one page: anonymous battle, side by side (named) and
// direct chat. Switches panels in place, keeps the mode in the address (?mode=), fills the model
// pickers with the active models, and builds a new battle's request for battle.js.

import { api } from "./api.js";

const tabList = document.getElementById("mode-tabs");
const tabs = [...tabList.querySelectorAll('[role="tab"]')];
const battleRoot = document.getElementById("battle");
const chatRoot = document.getElementById("chat");
const namedPick = document.getElementById("named-pick");
const namedA = document.getElementById("named-a");
const namedB = document.getElementById("named-b");
const pickers = [...document.querySelectorAll('select[data-models="active"]')];

let modelsLoaded = null;

// The active models, from the public sampling report (every approved model with its status).
// Each option says whether its model reads images (data-supports-images), for the chat's attach
// control; "arena:models" tells the pickers' users that the options changed.
function loadModels() {
  if (modelsLoaded) return modelsLoaded;
  modelsLoaded = api("GET", "/api/sampling")
    .then((report) => {
      const models = report.models
        .filter((model) => model.status === "active")
        .sort((x, y) => x.name.localeCompare(y.name));
      const names = models.map((model) => model.name);
      for (const select of pickers) {
        const chosen = select.value;
        const placeholder = select.options[0];
        const options = models.map((model) => {
          const option = document.createElement("option");
          option.value = model.name;
          option.textContent = model.name;
          option.dataset.supportsImages = String(Boolean(model.supports_images));
          return option;
        });
        select.replaceChildren(placeholder, ...options);
        if (names.includes(chosen)) select.value = chosen;
      }
      document.dispatchEvent(new CustomEvent("arena:models"));
      return names;
    })
    .catch(() => {
      modelsLoaded = null; // tried again on the next switch
      return [];
    });
  return modelsLoaded;
}

export function currentMode() {
  return tabList.dataset.mode;
}

function selectTab(mode, { focus = false, remember = true } = {}) {
  tabList.dataset.mode = mode;
  for (const tab of tabs) {
    const selected = tab.dataset.mode === mode;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    if (selected && focus) tab.focus();
  }
  battleRoot.hidden = mode === "chat";
  chatRoot.hidden = mode !== "chat";
  if (mode !== "chat") {
    battleRoot.dataset.mode = mode;
    namedPick.hidden = mode !== "named";
    for (const text of battleRoot.querySelectorAll(".for-anonymous")) text.hidden = mode !== "anonymous";
    for (const text of battleRoot.querySelectorAll(".for-named")) text.hidden = mode !== "named";
  }
  if (remember) {
    const url = new URL(window.location.href);
    if (mode === "anonymous") url.searchParams.delete("mode");
    else url.searchParams.set("mode", mode);
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  if (mode !== "anonymous") loadModels();
  document.dispatchEvent(new CustomEvent("arena:mode", { detail: mode }));
}

// A new battle's request body: the models chosen in the side-by-side tab, else anonymous.
export function battleRequest(prompt) {
  if (battleRoot.dataset.mode !== "named") return { prompt };
  const first = namedA.value;
  const second = namedB.value;
  if (!first) {
    namedA.focus();
    throw new Error("Choose model A first; model B may be left to be drawn.");
  }
  if (first === second) {
    namedB.focus();
    throw new Error("Choose two different models, or leave model B to be drawn.");
  }
  return { prompt, mode: "named", models: second ? [first, second] : [first] };
}

// The pickers choose the models of the next battle only: locked while one is open.
function lockPickers() {
  const open = battleRoot.dataset.state !== "idle";
  namedA.disabled = open;
  namedB.disabled = open;
}

for (const tab of tabs) {
  tab.addEventListener("click", (event) => {
    event.preventDefault();
    selectTab(tab.dataset.mode);
  });
}

// Arrow keys move between the tabs and open them (WAI-ARIA tabs with automatic activation).
tabList.addEventListener("keydown", (event) => {
  const at = tabs.findIndex((tab) => tab.dataset.mode === currentMode());
  let next = null;
  if (event.key === "ArrowRight" || event.key === "ArrowDown") next = (at + 1) % tabs.length;
  else if (event.key === "ArrowLeft" || event.key === "ArrowUp") next = (at - 1 + tabs.length) % tabs.length;
  else if (event.key === "Home") next = 0;
  else if (event.key === "End") next = tabs.length - 1;
  if (next === null) return;
  event.preventDefault();
  selectTab(tabs[next].dataset.mode, { focus: true });
});

// A battle reopened after a reload is shown under its own mode's tab.
document.addEventListener("arena:battle-mode", (event) => {
  if (currentMode() !== "chat" && event.detail !== currentMode()) selectTab(event.detail);
});

new MutationObserver(lockPickers).observe(battleRoot, { attributes: true, attributeFilter: ["data-state"] });
lockPickers();
selectTab(currentMode(), { remember: false });
