// The story view: one game's turns, the player's input, and playing a turn.

import { Intents, routes } from "./api.js";
import { genreColours, genreTitle, loadCatalog, styleTitle } from "./catalog.js";
import {
  announce, byId, clearNotice, fromTemplate, reducedMotion, setGenre, setParagraphs, showNotice,
} from "./dom.js";
import { Scene } from "./images.js";
import { closeMemory, setupMemory, showMemory } from "./memory.js";
import { describeError, fieldErrors } from "./messages.js";

const OLDER_PAGE = 20;
const intents = new Intents();

const el = {
  title: byId("story-title"),
  genre: byId("story-genre"),
  style: byId("story-style"),
  turns: byId("story-turns"),
  story: byId("story"),
  older: byId("older-turns"),
  writing: byId("writing"),
  notice: byId("story-notice"),
  form: byId("action-form"),
  input: byId("action-input"),
  act: byId("act"),
  error: byId("action-error"),
  mode: byId("action-mode"),
  label: document.querySelector('label[for="action-input"]'),
  retry: byId("retry-turn"),
  undo: byId("undo-turn"),
};

// How each mode of play asks for its text and what its button says.
const MODES = {
  do: { label: "What do you do?", placeholder: "Light the candle", button: "Act", text: "required" },
  say: { label: "What do you say?", placeholder: "Is anyone there?", button: "Say", text: "required" },
  story: { label: "What happens next?", placeholder: "The candle gutters and goes out.",
           button: "Write", text: "required" },
  continue: { label: "The narrator writes on", placeholder: "No text needed: press Continue",
              button: "Continue", text: "none" },
  see: { label: "What do you want to see?", placeholder: "The cellar by candlelight (optional)",
         button: "See", text: "optional" },
};
const modeOf = () => (MODES[el.mode.value] ? el.mode.value : "do");

// The open game: {id, game, controller, oldest, busy}; null on the title screen.
let current = null;
let onGone = () => {};

export function setupStory({ gone }) {
  onGone = gone;
  setupMemory({
    gameChanged(game) {
      if (current?.id === game.id) renderGame(game);
    },
    gone: (error) => onGone(error),
  });
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    playAction();
  });
  el.input.addEventListener("input", () => setFieldError(""));
  el.older.addEventListener("click", loadOlder);
  el.mode.addEventListener("change", () => {
    setFieldError("");
    applyMode();
    if (!el.input.disabled) el.input.focus();
  });
  el.retry.addEventListener("click", retryLast);
  el.undo.addEventListener("click", undoLast);
  el.story.addEventListener("click", onTurnClick);
  applyMode();
}

/** Label, placeholder and button of the chosen mode; no text box for ``continue``. */
function applyMode() {
  const mode = MODES[modeOf()];
  el.label.textContent = mode.label;
  el.input.placeholder = mode.placeholder;
  el.input.disabled = Boolean(current?.busy) || mode.text === "none";
  if (!current?.busy) el.act.textContent = mode.button;
}

/** The newest turn's number (the prologue is 0), from the game's turn count. */
function lastTurnNumber() {
  return Math.max(0, (current?.game?.turn_count ?? 1) - 1);
}

/** Retry and Undo apply to the newest turn, never the opening. */
function updateTools() {
  const playable = Boolean(current?.game) && lastTurnNumber() > 0
    && Boolean(turnItem(lastTurnNumber()));
  el.retry.hidden = !playable;
  el.undo.hidden = !playable;
  const busy = Boolean(current?.busy);
  el.retry.disabled = busy;
  el.undo.disabled = busy;
}

function turnItem(n) {
  return el.story.querySelector(`.turn[data-n="${Number(n)}"]`);
}

export function currentGameId() {
  return current?.id ?? null;
}

/** Leave the story view: stop waiting for its images. */
export function closeGame() {
  current?.controller.abort();
  current = null;
  closeMemory();
}

/** Open game ``id``; ``loaded`` is its {game, turns} when the caller has them already. */
export async function openGame(id, { loaded = null } = {}) {
  const sameGame = current?.id === id;
  closeGame();
  const controller = new AbortController();
  current = { id, game: null, controller, oldest: 0, busy: false };
  const mine = () => current?.controller === controller;

  el.story.replaceChildren();
  el.older.hidden = true;
  clearNotice(el.notice);
  setFieldError("");
  if (!sameGame) {
    el.input.value = "";
    el.mode.value = "do";
  }
  el.title.textContent = loaded?.game?.title ?? "Opening the book…";
  setBusy(true, { writing: false });
  applyMode();

  try {
    const data = loaded ?? await routes.loadGame(id, controller.signal);
    await loadCatalog().catch(() => null);  // titles and colours only; ids do without
    if (!mine()) return;
    renderGame(data.game);
    showMemory(data.game, controller.signal);
    const turns = [...(data.turns ?? [])].sort((a, b) => a.n - b.n);
    for (const turn of turns) el.story.append(turnElement(turn));
    current.oldest = turns[0]?.n ?? 0;
    el.older.hidden = current.oldest <= 0;
    setBusy(false);
    const last = el.story.lastElementChild;
    if (last) last.scrollIntoView({ block: "start" });
    focusInput();
  } catch (error) {
    if (error?.name === "AbortError" || !mine()) return;
    if (error.code === "session_not_found") {
      onGone(error);
      return;
    }
    el.title.textContent = "The book will not open";
    showNotice(el.notice, error, {
      what: "loading the adventure", actionLabel: "Try again", onAction: () => openGame(id),
    });
  }
}

function renderGame(game) {
  current.game = game;
  el.title.textContent = game.title;
  document.title = `${game.title} · Dungeon`;
  el.genre.textContent = genreTitle(game.genre);
  el.genre.dataset.genre = game.genre;
  el.style.textContent = styleTitle(game.style);
  const played = Math.max(0, (game.turn_count ?? 1) - 1);
  el.turns.textContent = played === 0 ? "Just begun" : `${played} turn${played === 1 ? "" : "s"}`;
  setGenre(game.genre, genreColours(game.genre));
}

/** The <li> of one turn: the player's action, the scene and the narration. */
function turnElement(turn) {
  const item = fromTemplate("turn-template");
  item.dataset.n = String(turn.n);
  const mode = MODES[turn.mode] ? turn.mode : "do";
  item.dataset.mode = mode;
  const action = item.querySelector(".player-action");
  const who = action.querySelector(".who");
  const text = action.querySelector(".action-text");
  if (turn.n === 0) {
    action.remove();
    item.classList.add("prologue");
  } else if (mode === "say") {
    who.textContent = "You say";
    text.textContent = `“${turn.action ?? ""}”`;
  } else if (mode === "story") {
    who.textContent = "You write";
    text.textContent = turn.action ?? "";
  } else if (mode === "continue") {
    who.textContent = "On";
    text.textContent = "The story goes on…";
  } else if (mode === "see") {
    who.textContent = "You see";
    text.textContent = turn.action || "the scene as it is";
  } else {
    text.textContent = turn.action ?? "";
  }
  item.querySelector(".turn-body").setAttribute(
    "aria-label", turn.n === 0 ? "Prologue" : `Turn ${turn.n}`);
  const narration = item.querySelector(".narration");
  if (mode === "see") {
    item.querySelector(".scene-title").textContent = turn.narration;
    narration.remove();
  } else {
    setParagraphs(narration, turn.narration);
  }
  const alternatives = turn.alternatives ?? [];
  if (alternatives.length > 1) {
    const chosen = Math.min(Math.max(turn.chosen ?? 0, 0), alternatives.length - 1);
    const nav = item.querySelector(".alternatives");
    nav.hidden = false;
    nav.dataset.chosen = String(chosen);
    nav.dataset.count = String(alternatives.length);
    const count = nav.querySelector(".alt-count");
    count.textContent = `${chosen + 1}/${alternatives.length}`;
    nav.querySelector(".alt-prev").disabled = chosen === 0;
    nav.querySelector(".alt-next").disabled = chosen === alternatives.length - 1;
  }
  item.querySelector(".edit-turn").setAttribute(
    "aria-label", turn.n === 0 ? "Edit the prologue" : `Edit turn ${turn.n}`);
  item.turn = turn;
  const scene = new Scene(item.querySelector(".scene"),
                          { gameId: current.id, n: turn.n, signal: current.controller.signal });
  scene.show(turn.image);
  return item;
}

function setBusy(busy, { writing = busy } = {}) {
  if (current) current.busy = busy;
  el.input.disabled = busy || MODES[modeOf()].text === "none";
  el.act.disabled = busy;
  el.mode.disabled = busy;
  el.form.setAttribute("aria-busy", String(busy));
  el.writing.hidden = !writing;
  el.act.textContent = writing ? "Writing…" : MODES[modeOf()].button;
  updateTools();
}

function focusInput() {
  (el.input.disabled ? el.act : el.input).focus({ preventScroll: true });
}

function setFieldError(text) {
  el.error.textContent = text;
  if (text) el.input.setAttribute("aria-invalid", "true");
  else el.input.removeAttribute("aria-invalid");
}

function scrollToTurn(item) {
  item.scrollIntoView({ block: "start", behavior: reducedMotion() ? "auto" : "smooth" });
}

/** Play what the player typed. The text stays in the box until the turn is saved. */
export async function playAction() {
  if (!current?.game || current.busy) return;
  const mode = modeOf();
  const need = MODES[mode].text;
  const text = need === "none" ? "" : el.input.value.trim();
  if (!text && need === "required") {
    setFieldError(mode === "say" ? "Type what you say first."
      : mode === "story" ? "Type what happens first." : "Type what you do first.");
    el.input.focus();
    return;
  }
  const body = text ? { action: text } : {};
  if (mode !== "do") body.mode = mode;
  const { id, controller } = current;
  const scope = `action:${id}`;
  const key = intents.key(scope, body);
  clearNotice(el.notice);
  setFieldError("");
  setBusy(true);
  el.writing.scrollIntoView({ block: "nearest", behavior: reducedMotion() ? "auto" : "smooth" });
  try {
    const data = await routes.act(id, body, key);
    intents.done(scope);
    if (current?.controller !== controller) return;
    el.input.value = "";
    renderGame(data.game);
    const item = turnElement(data.turn);
    el.story.append(item);
    setBusy(false);
    scrollToTurn(item);
    announce(data.turn.narration);
  } catch (error) {
    if (current?.controller !== controller) return;
    setBusy(false);
    actionFailed(error);
  } finally {
    if (current?.controller === controller) focusInput();
  }
}

function actionFailed(error) {
  if (error.code === "session_not_found") {
    onGone(error);
    return;
  }
  if (error.code === "validation_failed") {
    setFieldError(fieldErrors(error).action ? `Your action ${fieldErrors(error).action}.` : "");
  }
  if (error.code === "session_conflict") {
    showNotice(el.notice, error, {
      actionLabel: "Reload the story", onAction: () => openGame(current.id),
    });
    return;
  }
  showNotice(el.notice, error, { what: "your action" });
}

/** Prepend the turns before the oldest one shown, keeping the reader's place. */
async function loadOlder() {
  if (!current) return;
  const { id, controller } = current;
  el.older.disabled = true;
  el.older.textContent = "Turning back the pages…";
  try {
    const { turns } = await routes.turnsBefore(id, current.oldest, OLDER_PAGE, controller.signal);
    if (current?.controller !== controller) return;
    const sorted = [...(turns ?? [])].sort((a, b) => a.n - b.n);
    const before = document.documentElement.scrollHeight;
    el.story.prepend(...sorted.map(turnElement));
    window.scrollBy(0, document.documentElement.scrollHeight - before);
    current.oldest = sorted[0]?.n ?? 0;
    el.older.hidden = current.oldest <= 0 || sorted.length === 0;
  } catch (error) {
    if (error?.name === "AbortError" || current?.controller !== controller) return;
    showNotice(el.notice, error, { what: "loading earlier pages" });
  } finally {
    el.older.disabled = false;
    el.older.textContent = "Read earlier pages";
  }
}

/** Put ``turn`` in place of its element; return the new element. */
function replaceTurn(turn) {
  const old = turnItem(turn.n);
  const item = turnElement(turn);
  if (old) old.replaceWith(item);
  return item;
}

function storyFailed(error, what) {
  if (error?.name === "AbortError") return;
  if (error.code === "session_not_found") {
    onGone(error);
    return;
  }
  if (error.code === "session_conflict" || error.code === "image_conflict") {
    showNotice(el.notice, error, {
      actionLabel: "Reload the story", onAction: () => openGame(current.id),
    });
    return;
  }
  showNotice(el.notice, error, { what });
}

/** Narrate the newest turn again: a new version, shown with the way back to the others. */
async function retryLast() {
  if (!current?.game || current.busy) return;
  const { id, controller } = current;
  const n = lastTurnNumber();
  const scope = `retry:${id}:${n}`;
  const key = intents.key(scope, { n, version: current.game.version });
  clearNotice(el.notice);
  setBusy(true);
  try {
    const data = await routes.retryTurn(id, n, key);
    intents.done(scope);
    if (current?.controller !== controller) return;
    renderGame(data.game);
    const item = replaceTurn(data.turn);
    setBusy(false);
    scrollToTurn(item);
    announce(data.turn.mode === "see" ? "A new picture." : data.turn.narration);
    el.retry.focus({ preventScroll: true });
  } catch (error) {
    if (current?.controller !== controller) return;
    setBusy(false);
    storyFailed(error, "the new version");
  }
}

/** Take back the newest turn (never the opening). */
async function undoLast() {
  if (!current?.game || current.busy) return;
  const { id, controller } = current;
  const n = lastTurnNumber();
  const scope = `undo:${id}`;
  const key = intents.key(scope, { n });
  clearNotice(el.notice);
  setBusy(true, { writing: false });
  try {
    const data = await routes.undoTurn(id, key);
    intents.done(scope);
    if (current?.controller !== controller) return;
    turnItem(n)?.remove();
    renderGame(data.game);
    setBusy(false);
    if (!el.story.lastElementChild) {
      openGame(id);
      return;
    }
    announce("The last turn was taken back.");
    if (el.undo.hidden) focusInput();
    else el.undo.focus({ preventScroll: true });
  } catch (error) {
    if (current?.controller !== controller) return;
    setBusy(false);
    storyFailed(error, "taking the turn back");
  }
}

function onTurnClick(event) {
  const button = event.target.closest("button");
  const item = button?.closest(".turn");
  if (!item || !current || button.disabled) return;
  if (button.classList.contains("alt-prev") || button.classList.contains("alt-next")) {
    const chosen = Number(item.querySelector(".alternatives").dataset.chosen);
    choose(item, chosen + (button.classList.contains("alt-next") ? 1 : -1),
           button.classList.contains("alt-next") ? ".alt-next" : ".alt-prev");
  } else if (button.classList.contains("edit-turn")) {
    openEditor(item);
  }
}

/** Show version ``index`` of a turn. */
async function choose(item, index, focusSelector) {
  const { id, controller } = current;
  const n = item.turn.n;
  for (const b of item.querySelectorAll(".alternatives button")) b.disabled = true;
  clearNotice(el.notice);
  try {
    const { turn } = await routes.chooseAlternative(id, n, index);
    if (current?.controller !== controller) return;
    const fresh = replaceTurn(turn);
    const again = fresh.querySelector(focusSelector);
    const other = fresh.querySelector(".alternatives button:not(:disabled)");
    (again && !again.disabled ? again : other)?.focus({ preventScroll: true });
    const count = turn.alternatives?.length ?? 1;
    announce(`Version ${turn.chosen + 1} of ${count}.`);
  } catch (error) {
    if (current?.controller !== controller) return;
    for (const b of item.querySelectorAll(".alternatives button")) b.disabled = false;
    storyFailed(error, "showing that version");
  }
}

let editorIds = 0;

/** Edit a turn's narration (and action) in place. */
function openEditor(item) {
  if (item.querySelector(".turn-editor")) return;
  const turn = item.turn;
  const form = fromTemplate("edit-template");
  const suffix = `${++editorIds}`;
  const actionBox = form.querySelector(".edit-action");
  const narrationBox = form.querySelector(".edit-narration");
  const error = form.querySelector(".edit-error");
  const [actionLabel, narrationLabel] = form.querySelectorAll("label");
  actionBox.id = `edit-action-${suffix}`;
  actionLabel.htmlFor = actionBox.id;
  narrationBox.id = `edit-narration-${suffix}`;
  narrationLabel.htmlFor = narrationBox.id;
  error.id = `edit-error-${suffix}`;
  narrationBox.setAttribute("aria-describedby", error.id);
  if (turn.mode === "see") narrationLabel.textContent = "Caption";
  const withAction = turn.n > 0 && turn.mode !== "continue";
  if (withAction) actionBox.value = turn.action ?? "";
  else form.querySelector(".edit-action-field").remove();
  narrationBox.value = turn.narration ?? "";
  form.setAttribute("aria-label", turn.n === 0 ? "Edit the prologue" : `Edit turn ${turn.n}`);

  const body = item.querySelector(".turn-body");
  body.classList.add("editing");
  item.querySelector(".turn-tools").after(form);
  const close = (focusEdit = true) => {
    form.remove();
    body.classList.remove("editing");
    if (focusEdit) item.querySelector(".edit-turn")?.focus({ preventScroll: true });
  };
  form.querySelector(".edit-cancel").addEventListener("click", () => close());
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = {};
    const narration = narrationBox.value.trim();
    if (narration !== (turn.narration ?? "").trim()) changes.narration = narration;
    if (withAction) {
      const action = actionBox.value.trim();
      if (action !== (turn.action ?? "")) changes.action = action;
    }
    if (!Object.keys(changes).length) {
      close();
      return;
    }
    if (changes.narration === "" || changes.action === "") {
      error.textContent = changes.narration === "" ? "The narration cannot be empty."
        : "The action cannot be empty.";
      return;
    }
    const { id, controller } = current;
    error.textContent = "";
    for (const control of form.elements) control.disabled = true;
    try {
      const { turn: saved } = await routes.editTurn(id, turn.n, changes);
      if (current?.controller !== controller) return;
      const fresh = replaceTurn(saved);
      fresh.querySelector(".edit-turn").focus({ preventScroll: true });
      announce("The turn was changed.");
    } catch (failure) {
      if (current?.controller !== controller) return;
      for (const control of form.elements) control.disabled = false;
      if (failure.code === "session_not_found") {
        onGone(failure);
        return;
      }
      error.textContent = describeError(failure, { what: "the change" });
    }
  });
  narrationBox.focus();
}
