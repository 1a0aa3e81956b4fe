// Small DOM helpers. Text always goes in as text (textContent), never as HTML.

import { describeError } from "./messages.js";

export const byId = (id) => document.getElementById(id);

/** A fresh copy of the first element of <template id="...">. */
export function fromTemplate(id) {
  return byId(id).content.firstElementChild.cloneNode(true);
}

/** Fill ``container`` with one <p> per paragraph of ``text`` (blank lines separate them). */
export function setParagraphs(container, text) {
  const paragraphs = String(text ?? "").split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  container.replaceChildren(...paragraphs.map((paragraph) => {
    const p = document.createElement("p");
    p.textContent = paragraph;
    return p;
  }));
}

/**
 * Show a message in a notice element (a role="alert" region): an ApiError, or
 * plain text; ``actionLabel`` and ``onAction`` add a button (Try again).
 */
export function showNotice(element, problem, { what, actionLabel, onAction, tone = "error" } = {}) {
  const text = typeof problem === "string" ? problem : describeError(problem, { what });
  const message = document.createElement("p");
  message.className = "notice-text";
  message.textContent = text;
  const parts = [message];
  if (typeof problem !== "string" && problem?.requestId && problem.status >= 500) {
    const reference = document.createElement("p");
    reference.className = "notice-ref";
    reference.textContent = `Reference: ${problem.requestId}`;
    parts.push(reference);
  }
  if (actionLabel && onAction) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button small";
    button.textContent = actionLabel;
    button.addEventListener("click", onAction, { once: true });
    parts.push(button);
  }
  element.dataset.tone = tone;
  element.dataset.code = typeof problem === "string" ? "" : problem?.code ?? "";
  element.replaceChildren(...parts);
}

export function clearNotice(element) {
  element.replaceChildren();
  delete element.dataset.code;
}

/** Say ``text`` to screen readers through the polite live region. */
export function announce(text) {
  const region = byId("announcer");
  region.textContent = "";
  // A new text node after a tick is announced even when the text repeats.
  window.setTimeout(() => { region.textContent = text; }, 50);
}

/** A Date from an ISO 8601 string or Unix seconds; null when neither. */
export function parseTime(value) {
  if (typeof value === "number" && Number.isFinite(value)) {
    return new Date(value < 1e12 ? value * 1000 : value);
  }
  if (typeof value === "string" && value) {
    if (/^\d+(\.\d+)?$/.test(value)) return parseTime(Number(value));
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? null : new Date(ms);
  }
  return null;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const STEPS = [["second", 60], ["minute", 60], ["hour", 24], ["day", 7], ["week", 4.35],
  ["month", 12], ["year", Infinity]];

/** "5 minutes ago", "yesterday". */
export function timeAgo(date, now = Date.now()) {
  let amount = (date.getTime() - now) / 1000;
  for (const [unit, size] of STEPS) {
    if (Math.abs(amount) < size) {
      return unit === "second" && Math.abs(amount) < 45 ? "just now" : relative.format(Math.round(amount), unit);
    }
    amount /= size;
  }
  return date.toLocaleDateString();
}

export function reducedMotion() {
  return window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

/** Set the page's genre: its colours come from the stylesheet or the catalog. */
export function setGenre(genre, colours = null) {
  document.body.dataset.genre = genre ?? "";
  const root = document.documentElement.style;
  for (const name of ["--accent", "--genre-bg"]) root.removeProperty(name);
  if (colours?.accent) root.setProperty("--accent", colours.accent);
  if (colours?.background) root.setProperty("--genre-bg", colours.background);
}

/**
 * A genre's colours as CSS colours, if the catalog gives any: ``colours`` or
 * ``colors`` as {background, accent} or [background, accent], each a CSS
 * colour string or an [r, g, b] list.
 */
export function catalogColours(genre) {
  const raw = genre?.colours ?? genre?.colors;
  if (!raw) return null;
  const [background, accent] = Array.isArray(raw) ? raw : [raw.background, raw.accent];
  const css = (value) => {
    if (Array.isArray(value) && value.length === 3 && value.every(Number.isFinite)) {
      return `rgb(${value.join(" ")})`;
    }
    return typeof value === "string" && /^(#[0-9a-f]{3,8}|rgb\([\d\s,.%]+\))$/i.test(value) ? value : null;
  };
  const colours = { background: css(background), accent: css(accent) };
  return colours.background || colours.accent ? colours : null;
}
