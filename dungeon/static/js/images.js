// Scene images: wait while the service paints them, then show them; offer
// another try when a scene ended with its placeholder.

import { ApiError, Intents, errorFrom, pause, retryAfterSeconds, routes } from "./api.js";
import { describeError } from "./messages.js";

const DEFAULT_WAIT = 2;
const MAX_WAIT = 30;
const GIVE_UP_MS = 5 * 60 * 1000;
const MAX_FAILURES = 5;

const intents = new Intents();
const isAbort = (error) => error?.name === "AbortError";

/**
 * Resolve once the image at ``url`` is ready (200), polling while the service
 * answers 202 and waiting as its Retry-After says.  Rejects with ApiError when
 * the image is gone (404) or keeps failing.
 */
export async function waitForImage(url, signal) {
  const giveUp = Date.now() + GIVE_UP_MS;
  let failures = 0;
  while (Date.now() < giveUp) {
    let response;
    try {
      response = await fetch(url, { signal, headers: { Accept: "image/*, application/json" } });
    } catch (error) {
      if (isAbort(error)) throw error;
      failures += 1;
      if (failures > MAX_FAILURES) throw new ApiError({ message: "The picture could not be fetched." });
      await pause(1000 * failures, signal);
      continue;
    }
    if (response.status === 200) {
      // Read it whole: the browser caches it (it is immutable), so the <img>
      // that shows it next does not download it again.
      await response.arrayBuffer();
      return;
    }
    if (response.status === 202) {
      const wait = retryAfterSeconds(response.headers.get("Retry-After")) ?? DEFAULT_WAIT;
      await response.body?.cancel();
      await pause(Math.min(Math.max(wait, 0.5), MAX_WAIT) * 1000, signal);
      continue;
    }
    const error = await errorFrom(response);
    if (response.status === 429 || response.status >= 500) {
      failures += 1;
      if (failures > MAX_FAILURES) throw error;
      await pause(Math.min(error.retryAfter ?? failures * 2, MAX_WAIT) * 1000, signal);
      continue;
    }
    throw error;
  }
  throw new ApiError({ code: "image_timeout", message: "The picture is taking too long." });
}

/** The picture of one turn, inside its <figure class="scene">. */
export class Scene {
  constructor(figure, { gameId, n, signal }) {
    this.figure = figure;
    this.gameId = gameId;
    this.n = n;
    this.signal = signal;
    this.img = figure.querySelector(".scene-image");
    this.badge = figure.querySelector(".badge");
    this.note = figure.querySelector(".scene-note");
    this.button = figure.querySelector(".retry-image");
    this.loadingText = figure.querySelector(".scene-loading-text");
    this.generation = 0;
    this.image = null;
    this.button.addEventListener("click", () => this.#onButton());
  }

  /** Show ``image`` (a turn's image object), waiting for it while it is pending. */
  async show(image) {
    const generation = ++this.generation;
    this.image = image;
    if (!image?.url) {
      this.#setState("none");
      return;
    }
    this.#setState("loading");
    try {
      let ready = image;
      if (image.status !== "ready") {
        await waitForImage(image.url, this.signal);
        ready = await this.#refresh(image);
      }
      if (generation !== this.generation) return;
      if (ready.status !== "ready" && ready.id !== image.id) {
        this.show(ready);  // a newer try replaced it meanwhile
        return;
      }
      await this.#display(ready);
      if (generation === this.generation) this.#setState("ready");
    } catch (error) {
      if (isAbort(error) || generation !== this.generation) return;
      this.#fail(error);
    }
  }

  /** Ask the service for the turn's image again: provider, placeholder, status. */
  async #refresh(image) {
    try {
      const { turns } = await routes.turnsBefore(this.gameId, this.n + 1, 1, this.signal);
      const fresh = (turns ?? []).find((turn) => turn.n === this.n)?.image;
      if (fresh?.id === image.id) return { ...fresh, status: "ready" };
      if (fresh) return fresh;
    } catch (error) {
      if (isAbort(error)) throw error;
    }
    return { ...image, status: "ready" };  // ready, though who painted it is unknown
  }

  async #display(image) {
    this.image = image;
    this.img.alt = image.placeholder
      ? "Placeholder art for this scene"
      : "Illustration of this scene";
    await this.#load(image.url);
    this.img.hidden = false;
    const placeholder = Boolean(image.placeholder);
    this.figure.dataset.placeholder = String(placeholder);
    this.badge.hidden = !placeholder;
    this.button.hidden = !placeholder;
    this.button.textContent = "Try again";
    this.button.setAttribute("aria-label", "Try again to paint this scene");
    this.note.textContent = placeholder
      ? "Placeholder art: the illustrator could not paint this scene."
      : image.provider ? `Painted by ${image.provider}` : "";
  }

  /** Point the <img> at ``url`` and resolve once it has loaded. */
  #load(url) {
    const img = this.img;
    if (img.getAttribute("src") === url && img.complete && img.naturalWidth > 0) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const settle = (event) => {
        img.removeEventListener("load", settle);
        img.removeEventListener("error", settle);
        if (event.type === "load" && img.naturalWidth > 0) resolve();
        else reject(new ApiError({ code: "image_broken", message: "The picture could not be shown." }));
      };
      img.addEventListener("load", settle);
      img.addEventListener("error", settle);
      if (img.getAttribute("src") === url) img.removeAttribute("src");
      img.src = url;
    });
  }

  #fail(error) {
    this.figure.dataset.error = `${error?.name}: ${error?.message}`;
    this.#setState("failed");
    this.note.textContent = error.code === "image_not_found"
      ? "This picture is lost."
      : `The picture could not be shown. ${error.code === "network_error" || !error.status ? "" : describeError(error)}`.trim();
    this.button.hidden = false;
    this.button.textContent = "Reload picture";
    this.button.removeAttribute("aria-label");
  }

  #setState(state) {
    this.figure.dataset.state = state;
    this.figure.hidden = state === "none";
    this.figure.setAttribute("aria-busy", String(state === "loading"));
    if (state === "loading") {
      this.button.hidden = true;
      this.note.textContent = "";
    }
  }

  async #onButton() {
    if (this.figure.dataset.state === "failed") {
      this.show(this.image);
      return;
    }
    this.button.disabled = true;
    this.button.textContent = "Asking the illustrator…";
    try {
      const scope = `image:${this.gameId}:${this.n}`;
      const { turn } = await routes.retryImage(this.gameId, this.n, intents.key(scope, {}));
      intents.done(scope);
      this.loadingText.textContent = "The illustrator tries again…";
      await this.show(turn.image);
    } catch (error) {
      if (error.code === "conflict") {
        await this.show(await this.#refresh({ ...this.image, id: null }));
      } else {
        this.note.textContent = describeError(error, { what: "the new picture" });
        this.button.textContent = "Try again";
      }
    } finally {
      this.button.disabled = false;
      this.loadingText.textContent = "The illustrator is at work…";
    }
  }
}
