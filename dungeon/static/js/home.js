// The title screen: a new adventure, and the saved ones to resume or delete.

import { Intents, routes } from "./api.js";
import { genreColours, genreTitle, loadCatalog, styleTitle } from "./catalog.js";
import {
  announce, byId, clearNotice, fromTemplate, parseTime, setGenre, showNotice, timeAgo,
} from "./dom.js";
import { fieldErrors } from "./messages.js";

const PAGE = 12;
const FIELDS = ["genre", "style", "title", "custom_prologue"];
const intents = new Intents();

const el = {
  notice: byId("home-notice"),
  form: byId("new-game"),
  genres: byId("genre-options"),
  styles: byId("style-options"),
  title: byId("title-input"),
  prologue: byId("prologue-input"),
  formNotice: byId("new-game-notice"),
  begin: byId("begin"),
  list: byId("game-list"),
  listNotice: byId("list-notice"),
  listLoading: byId("list-loading"),
  empty: byId("no-games"),
  more: byId("more-games"),
  dialog: byId("confirm-delete"),
  dialogText: byId("confirm-text"),
  dialogOk: byId("confirm-ok"),
  dialogCancel: byId("confirm-cancel"),
};

let started = () => {};
let flash = null;
let nextCursor = null;
let catalogShown = false;

export function setupHome({ onStarted }) {
  started = onStarted;
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    beginAdventure();
  });
  el.form.addEventListener("change", (event) => {
    if (event.target.name === "genre") setGenre(event.target.value, genreColours(event.target.value));
  });
  el.more.addEventListener("click", () => loadGames({ more: true }));
  el.dialogOk.addEventListener("click", () => el.dialog.close("delete"));
  el.dialogCancel.addEventListener("click", () => el.dialog.close("cancel"));
}

/** Show ``error`` on the title screen the next time it opens (a game that is gone, say). */
export function flashOnHome(error) {
  flash = error;
}

/** Fill the title screen: the catalog once, the saved games every time. */
export function showHome() {
  document.title = "Dungeon: an illustrated text adventure";
  if (flash) {
    showNotice(el.notice, flash, { tone: "warning" });
    flash = null;
  } else {
    clearNotice(el.notice);
  }
  const checked = el.form.querySelector("input[name=genre]:checked");
  setGenre(checked?.value ?? "", checked ? genreColours(checked.value) : null);
  if (!catalogShown) showCatalog();
  loadGames();
}

// --- the new adventure --------------------------------------------------------

async function showCatalog() {
  clearNotice(el.formNotice);
  try {
    const catalog = await loadCatalog();
    el.genres.replaceChildren(...catalog.genres.map((genre, i) => {
      const card = fromTemplate("genre-template");
      card.dataset.genre = genre.id;
      const colours = genreColours(genre.id);
      if (colours?.accent) card.style.setProperty("--accent", colours.accent);
      const input = card.querySelector("input");
      input.value = genre.id;
      input.checked = i === 0;
      card.querySelector(".genre-name").textContent = genre.title;
      card.querySelector(".genre-blurb").textContent = genre.blurb ?? "";
      return card;
    }));
    el.styles.replaceChildren(...catalog.styles.map((style, i) => {
      const chip = fromTemplate("style-template");
      const input = chip.querySelector("input");
      input.value = style.id;
      input.checked = i === 0;
      chip.querySelector(".chip-name").textContent = style.title;
      return chip;
    }));
    catalogShown = true;
    const first = catalog.genres[0]?.id;
    if (first) setGenre(first, genreColours(first));
  } catch (error) {
    el.genres.replaceChildren();
    showNotice(el.formNotice, error, {
      what: "loading the worlds", actionLabel: "Try again", onAction: showCatalog,
    });
  }
}

function formBody() {
  const data = new FormData(el.form);
  const body = { genre: data.get("genre"), style: data.get("style") };
  const title = String(data.get("title") ?? "").trim();
  const prologue = String(data.get("custom_prologue") ?? "").trim();
  if (title) body.title = title;
  if (prologue) body.custom_prologue = prologue;
  return body;
}

function showFieldErrors(errors) {
  for (const field of FIELDS) {
    const message = byId(`${field}-error`);
    const text = errors[field] ?? "";
    message.textContent = text ? `This ${text}.` : "";
    const input = el.form.elements[field];
    if (input instanceof HTMLElement) {
      if (text) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }
  if (errors.custom_prologue) el.prologue.closest("details").open = true;
}

async function beginAdventure() {
  const body = formBody();
  if (!body.genre || !body.style) {
    showFieldErrors({ genre: body.genre ? undefined : "needs a choice",
                      style: body.style ? undefined : "needs a choice" });
    return;
  }
  const key = intents.key("create", body);
  clearNotice(el.formNotice);
  showFieldErrors({});
  el.begin.disabled = true;
  el.form.setAttribute("aria-busy", "true");
  el.begin.textContent = "The narrator sets the scene…";
  try {
    const data = await routes.createGame(body, key);
    intents.done("create");
    el.title.value = "";
    el.prologue.value = "";
    started(data);
  } catch (error) {
    if (error.code === "validation_failed") showFieldErrors(fieldErrors(error));
    showNotice(el.formNotice, error, { what: "the new adventure" });
  } finally {
    el.begin.disabled = false;
    el.form.removeAttribute("aria-busy");
    el.begin.textContent = "Begin the adventure";
  }
}

// --- saved games --------------------------------------------------------------

async function loadGames({ more = false } = {}) {
  clearNotice(el.listNotice);
  if (!more) el.listLoading.hidden = false;
  el.more.disabled = true;
  try {
    const [data] = await Promise.all([
      routes.listGames({ limit: PAGE, cursor: more ? nextCursor : undefined }),
      loadCatalog().catch(() => null),  // for the genres' and styles' names
    ]);
    const cards = (data.games ?? []).map(gameCard);
    if (more) el.list.append(...cards);
    else el.list.replaceChildren(...cards);
    nextCursor = data.next_cursor ?? null;
  } catch (error) {
    showNotice(el.listNotice, error, {
      what: "loading your adventures", actionLabel: "Try again", onAction: () => loadGames({ more }),
    });
  } finally {
    el.listLoading.hidden = true;
    el.more.disabled = false;
    el.more.hidden = !nextCursor;
    el.empty.hidden = el.list.children.length > 0 || el.listNotice.childElementCount > 0;
  }
}

function gameCard(game) {
  const card = fromTemplate("game-template");
  card.dataset.id = game.id;
  card.dataset.genre = game.genre;
  card.querySelector(".game-card-title").textContent = game.title;
  const genre = card.querySelector(".genre-tag");
  genre.textContent = genreTitle(game.genre);
  genre.dataset.genre = game.genre;
  const colours = genreColours(game.genre);
  if (colours?.accent) card.style.setProperty("--accent", colours.accent);
  card.querySelector(".style-tag").textContent = styleTitle(game.style);
  const played = Math.max(0, (game.turn_count ?? 1) - 1);
  card.querySelector(".turn-count").textContent =
    played === 0 ? "Just begun" : `${played} turn${played === 1 ? "" : "s"}`;
  const updated = parseTime(game.updated_at);
  const time = card.querySelector(".updated");
  if (updated) {
    time.dateTime = updated.toISOString();
    time.textContent = `played ${timeAgo(updated)}`;
    time.title = updated.toLocaleString();
  }
  const resume = card.querySelector(".continue");
  resume.href = `#/games/${encodeURIComponent(game.id)}`;
  resume.setAttribute("aria-label", `Continue “${game.title}”`);
  const remove = card.querySelector(".delete");
  remove.setAttribute("aria-label", `Delete “${game.title}”`);
  remove.addEventListener("click", () => deleteGame(game, card));
  return card;
}

/** Resolve true when the player confirms in the dialog (Escape and Keep it say no). */
function confirmDelete(text) {
  el.dialogText.textContent = text;
  el.dialog.returnValue = "";
  el.dialog.showModal();
  el.dialogCancel.focus();
  return new Promise((resolve) => {
    el.dialog.addEventListener("close", () => resolve(el.dialog.returnValue === "delete"),
                               { once: true });
  });
}

async function deleteGame(game, card) {
  const sure = await confirmDelete(`“${game.title}” and every page of it will be gone for good.`);
  if (!sure) return;
  clearNotice(el.listNotice);
  try {
    await routes.deleteGame(game.id);
  } catch (error) {
    if (error.code !== "session_not_found") {  // already gone is what was asked
      showNotice(el.listNotice, error, { what: "deleting the adventure" });
      return;
    }
  }
  const next = card.nextElementSibling ?? card.previousElementSibling;
  card.remove();
  announce(`Deleted “${game.title}”.`);
  el.empty.hidden = el.list.children.length > 0;
  (next?.querySelector(".continue") ?? byId("saved-heading")).focus?.();
}
