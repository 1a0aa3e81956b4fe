// The story view: one game's turns, the player's input, and playing a turn.

import { Intents, routes } from "./api.js";
import { genreColours, genreTitle, loadCatalog, styleTitle } from "./catalog.js";
import {
  announce, byId, clearNotice, fromTemplate, reducedMotion, setGenre, setParagraphs, showNotice,
} from "./dom.js";
import { Scene } from "./images.js";
import { fieldErrors } from "./messages.js";

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
};

// The open game: {id, game, controller, oldest, busy}; null on the title screen.
let current = null;
let onGone = () => {};

export function setupStory({ gone }) {
  onGone = gone;
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    playAction();
  });
  el.input.addEventListener("input", () => setFieldError(""));
  el.older.addEventListener("click", loadOlder);
}

export function currentGameId() {
  return current?.id ?? null;
}

/** Leave the story view: stop waiting for its images. */
export function closeGame() {
  current?.controller.abort();
  current = null;
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
  if (!sameGame) el.input.value = "";
  el.title.textContent = loaded?.game?.title ?? "Opening the book…";
  setBusy(true, { writing: false });

  try {
    const data = loaded ?? await routes.loadGame(id, controller.signal);
    await loadCatalog().catch(() => null);  // titles and colours only; ids do without
    if (!mine()) return;
    renderGame(data.game);
    const turns = [...(data.turns ?? [])].sort((a, b) => a.n - b.n);
    for (const turn of turns) el.story.append(turnElement(turn));
    current.oldest = turns[0]?.n ?? 0;
    el.older.hidden = current.oldest <= 0;
    setBusy(false);
    const last = el.story.lastElementChild;
    if (last) last.scrollIntoView({ block: "start" });
    el.input.focus({ preventScroll: true });
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
  const action = item.querySelector(".player-action");
  if (turn.action) {
    action.querySelector(".action-text").textContent = turn.action;
  } else {
    action.remove();
    item.classList.add("prologue");
  }
  item.querySelector(".turn-body").setAttribute(
    "aria-label", turn.n === 0 ? "Prologue" : `Turn ${turn.n}`);
  setParagraphs(item.querySelector(".narration"), turn.narration);
  const scene = new Scene(item.querySelector(".scene"),
                          { gameId: current.id, n: turn.n, signal: current.controller.signal });
  scene.show(turn.image);
  return item;
}

function setBusy(busy, { writing = busy } = {}) {
  if (current) current.busy = busy;
  el.input.disabled = busy;
  el.act.disabled = busy;
  el.form.setAttribute("aria-busy", String(busy));
  el.writing.hidden = !writing;
  el.act.textContent = writing ? "Writing…" : "Act";
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
  const text = el.input.value.trim();
  if (!text) {
    setFieldError("Type what you do first.");
    el.input.focus();
    return;
  }
  const { id, controller } = current;
  const scope = `action:${id}`;
  const key = intents.key(scope, { action: text });
  clearNotice(el.notice);
  setFieldError("");
  setBusy(true);
  el.writing.scrollIntoView({ block: "nearest", behavior: reducedMotion() ? "auto" : "smooth" });
  try {
    const data = await routes.act(id, text, key);
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
    if (current?.controller === controller) el.input.focus({ preventScroll: true });
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
