// What the player reads when something goes wrong, by error code.

const FIELD_NAMES = {
  action: "Your action",
  narration: "The narration",
  index: "The choice",
  title: "The title",
  custom_prologue: "The opening passage",
  genre: "The world",
  style: "The art style",
  cursor: "The page of saved games",
};

const LIMITED = {
  actions: "You are acting faster than the story can follow.",
  games: "You have started many adventures in a short time.",
  images: "You have asked for many new pictures in a short time.",
  guests: "Too many new players have joined from this address.",
};

/** "12 seconds", "3 minutes", "about an hour". */
export function duration(seconds) {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return `${s} second${s === 1 ? "" : "s"}`;
  const m = Math.ceil(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? "" : "s"}`;
  const h = Math.round(m / 60);
  return h <= 1 ? "about an hour" : `about ${h} hours`;
}

/** The field messages of a validation_failed error: {field: "reason"}. */
export function fieldErrors(error) {
  const fields = error?.details?.fields;
  return fields && typeof fields === "object" ? fields : {};
}

function listOf(values) {
  if (Array.isArray(values)) return values.map(String).filter(Boolean);
  if (values && typeof values === "object") {
    return Object.entries(values).filter(([, on]) => on).map(([name]) => name);
  }
  return typeof values === "string" && values ? [values] : [];
}

function humanise(word) {
  return word.replace(/[_/-]+/g, " ").trim();
}

/**
 * The text to show for ``error`` (an ApiError). ``what`` names what was being
 * done ("your action", "the new adventure") for the generic messages.
 */
export function describeError(error, { what = "that" } = {}) {
  const details = error?.details ?? {};
  switch (error?.code) {
    case "rate_limited": {
      const why = LIMITED[details.scope] ?? "Too many requests in a short time.";
      const wait = error.retryAfter != null
        ? `Try again in ${duration(error.retryAfter)}.` : "Wait a little and try again.";
      return `${why} ${wait}`;
    }
    case "content_refused": {
      const categories = listOf(details.categories).map(humanise);
      const flagged = categories.length ? ` (flagged: ${categories.join(", ")})` : "";
      return `The narrator will not write that${flagged}. Try saying it another way.`;
    }
    case "prompt_refused": {
      const reasons = listOf(details.reasons ?? details.categories).map(humanise);
      const why = reasons.length ? ` (${reasons.join(", ")})` : "";
      return `That text was refused by the content checks${why}. Try different wording.`;
    }
    case "validation_failed": {
      const fields = Object.entries(fieldErrors(error))
        .map(([name, reason]) => `${FIELD_NAMES[name] ?? humanise(name)} ${reason}.`);
      return fields.length ? `Please fix this: ${fields.join(" ")}` : error.message;
    }
    case "session_not_found":
      return "This adventure is gone: it may have expired or been deleted.";
    case "store_unavailable":
      return "Saved games are out of reach for a moment. Try again: nothing will happen twice.";
    case "narrator_busy": {
      const wait = error.retryAfter != null
        ? `Try again in ${duration(error.retryAfter)}.` : "Try again shortly.";
      return `The narrator is busy with other stories; nothing was saved. ${wait}`;
    }
    case "image_conflict":
      return "This turn's picture changed meanwhile. Reload the story to see it.";
    case "conflict":
      return error?.message || "That cannot be done to the story as it is now.";
    case "narrator_unavailable":
      return "The narrator lost the thread; nothing was saved. Try again.";
    case "service_unavailable":
      return "The service is unavailable for a moment. Try again.";
    case "idempotency_conflict":
      return "Your last request is still being worked on. Wait a moment, then try again.";
    case "session_conflict":
      return "The story moved on elsewhere (another window?). Reload it and try again.";
    case "network_error":
      return `Could not reach the server, so ${what} did not go through. Check your connection and try again.`;
    case "unauthorized":
      return "Your guest pass was not accepted. Reload the page to get a new one.";
    default: {
      const message = error?.message || "Something went wrong.";
      return error?.requestId ? `${message} (reference ${error.requestId})` : message;
    }
  }
}
