// The story memory of the open game: plot essentials, the author's note, the
// picture setting, and its story cards.

import { Intents, routes } from "./api.js";
import { announce, byId, clearNotice, fromTemplate, showNotice } from "./dom.js";
import { fieldErrors } from "./messages.js";

const MEMORY_FIELDS = ["plot_essentials", "authors_note"];
const intents = new Intents();

const el = {
  details: byId("memory"),
  form: byId("memory-form"),
  plot: byId("plot-input"),
  note: byId("note-input"),
  imageMode: byId("image-mode-input"),
  save: byId("memory-save"),
  status: byId("memory-status"),
  notice: byId("memory-notice"),
  cards: byId("card-list"),
  noCards: byId("no-cards"),
  cardForm: byId("card-form"),
  cardHeading: byId("card-form-heading"),
  cardTitle: byId("card-title"),
  cardKeys: byId("card-keys"),
  cardText: byId("card-text"),
  cardSave: byId("card-save"),
  cardCancel: byId("card-cancel"),
  cardNotice: byId("card-notice"),
};

// {id, game, signal, cardsLoaded, editing (a card id or null)}; null when no game is open.
let open = null;
let onGame = () => {};
let onGone = () => {};

export function setupMemory({ gameChanged, gone }) {
  onGame = gameChanged;
  onGone = gone;
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveMemory();
  });
  el.details.addEventListener("toggle", () => {
    if (el.details.open && open && !open.cardsLoaded) loadCards();
  });
  el.cardForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveCard();
  });
  el.cardCancel.addEventListener("click", () => {
    resetCardForm();
    el.cardTitle.focus();
  });
  el.cards.addEventListener("click", onCardClick);
}

/** Show the memory of ``game`` (just opened): its fields, and its cards when the panel is open. */
export function showMemory(game, signal) {
  open = { id: game.id, game, signal, cardsLoaded: false, editing: null };
  fillFields(game);
  el.status.textContent = "";
  clearNotice(el.notice);
  clearNotice(el.cardNotice);
  el.cards.replaceChildren();
  el.noCards.hidden = true;
  resetCardForm();
  if (el.details.open) loadCards();
}

export function closeMemory() {
  open = null;
}

function fillFields(game) {
  el.plot.value = game.plot_essentials ?? "";
  el.note.value = game.authors_note ?? "";
  el.imageMode.value = game.image_mode ?? "every_turn";
  for (const name of MEMORY_FIELDS) setFieldError(name, "");
}

function setFieldError(name, text) {
  const box = name === "plot_essentials" ? el.plot : el.note;
  byId(`${name}-memory-error`).textContent = text;
  if (text) box.setAttribute("aria-invalid", "true");
  else box.removeAttribute("aria-invalid");
}

async function saveMemory() {
  if (!open) return;
  const { id, game } = open;
  const body = {};
  const clear = [];
  for (const [name, box] of [["plot_essentials", el.plot], ["authors_note", el.note]]) {
    const value = box.value.trim();
    if (value === (game[name] ?? "").trim()) continue;
    if (value) body[name] = value;
    else clear.push(name);
  }
  if (el.imageMode.value !== game.image_mode) body.image_mode = el.imageMode.value;
  if (clear.length) body.clear = clear;
  clearNotice(el.notice);
  for (const name of MEMORY_FIELDS) setFieldError(name, "");
  if (!Object.keys(body).length) {
    el.status.textContent = "Nothing changed.";
    return;
  }
  el.save.disabled = true;
  el.status.textContent = "Saving…";
  try {
    const { game: saved } = await routes.updateGame(id, body);
    if (open?.id !== id) return;
    open.game = saved;
    fillFields(saved);
    el.status.textContent = "Saved.";
    onGame(saved);
  } catch (error) {
    if (open?.id !== id) return;
    el.status.textContent = "";
    failed(error, el.notice, "the story memory");
    for (const [name, reason] of Object.entries(fieldErrors(error))) {
      if (MEMORY_FIELDS.includes(name)) setFieldError(name, reason);
    }
  } finally {
    el.save.disabled = false;
  }
}

function failed(error, notice, what) {
  if (error?.name === "AbortError") return;
  if (error.code === "session_not_found") {
    onGone(error);
    return;
  }
  showNotice(notice, error, { what });
}

// --- story cards --------------------------------------------------------------

async function loadCards() {
  const { id, signal } = open;
  open.cardsLoaded = true;
  try {
    const { cards } = await routes.listCards(id, signal);
    if (open?.id !== id) return;
    el.cards.replaceChildren(...(cards ?? []).map(cardElement));
    el.noCards.hidden = el.cards.children.length > 0;
  } catch (error) {
    if (open?.id !== id) return;
    open.cardsLoaded = false;
    failed(error, el.cardNotice, "loading the story cards");
  }
}

function cardElement(card) {
  const item = fromTemplate("card-template");
  item.dataset.id = card.id;
  item.card = card;
  item.querySelector(".story-card-title").textContent = card.title;
  item.querySelector(".story-card-keys").textContent = `Keys: ${card.keys.join(", ")}`;
  item.querySelector(".story-card-text").textContent = card.text;
  item.setAttribute("aria-label", `Card: ${card.title}`);
  item.querySelector(".card-edit").setAttribute("aria-label", `Edit card ${card.title}`);
  item.querySelector(".card-delete").setAttribute("aria-label", `Delete card ${card.title}`);
  return item;
}

function keysOf(text) {
  return text.split(",").map((key) => key.trim()).filter(Boolean);
}

function resetCardForm() {
  if (open) open.editing = null;
  el.cardForm.reset();
  el.cardHeading.textContent = "Add a card";
  el.cardSave.textContent = "Add card";
  el.cardCancel.hidden = true;
  clearNotice(el.cardNotice);
}

async function saveCard() {
  if (!open) return;
  const body = { title: el.cardTitle.value.trim(), keys: keysOf(el.cardKeys.value),
                 text: el.cardText.value.trim() };
  if (!body.title || !body.keys.length || !body.text) {
    showNotice(el.cardNotice, "A card needs a title, at least one key and its text.");
    return;
  }
  const { id } = open;
  const editing = open.editing;
  const scope = `card:${id}`;
  el.cardSave.disabled = true;
  clearNotice(el.cardNotice);
  try {
    const { card } = editing
      ? await routes.updateCard(id, editing, body)
      : await routes.createCard(id, body, intents.key(scope, body));
    if (!editing) intents.done(scope);
    if (open?.id !== id) return;
    const item = cardElement(card);
    const old = el.cards.querySelector(`[data-id="${CSS.escape(card.id)}"]`);
    if (old) old.replaceWith(item);
    else el.cards.append(item);
    el.noCards.hidden = true;
    resetCardForm();
    announce(editing ? `Card ${card.title} saved.` : `Card ${card.title} added.`);
    el.cardTitle.focus();
  } catch (error) {
    if (open?.id !== id) return;
    failed(error, el.cardNotice, "the story card");
  } finally {
    el.cardSave.disabled = false;
  }
}

async function onCardClick(event) {
  const button = event.target.closest("button");
  const item = button?.closest(".story-card");
  if (!item || !open) return;
  const card = item.card;
  if (button.classList.contains("card-edit")) {
    open.editing = card.id;
    el.cardTitle.value = card.title;
    el.cardKeys.value = card.keys.join(", ");
    el.cardText.value = card.text;
    el.cardHeading.textContent = `Edit the card ${card.title}`;
    el.cardSave.textContent = "Save card";
    el.cardCancel.hidden = false;
    el.cardTitle.focus();
    return;
  }
  if (button.classList.contains("card-delete")) {
    const { id } = open;
    button.disabled = true;
    try {
      await routes.deleteCard(id, card.id);
      if (open?.id !== id) return;
      if (open.editing === card.id) resetCardForm();
      item.remove();
      el.noCards.hidden = el.cards.children.length > 0;
      announce(`Card ${card.title} deleted.`);
      el.cardTitle.focus();
    } catch (error) {
      button.disabled = false;
      if (open?.id !== id) return;
      failed(error, el.cardNotice, "deleting the card");
    }
  }
}
