// The one way the client talks to the service: JSON in and out, the guest
// bearer token, Idempotency-Key headers, retries, and the error shape
// {"error": {"code", "message", "details"?}, "request_id"}.

const TOKEN_KEY = "dungeon.guest";
const NETWORK_RETRIES = 2;
const UNAVAILABLE_RETRIES = 1;
const MAX_WAIT_SECONDS = 5;
// 503s the client retries by itself; a failed narrator already retried on the
// server, so the player decides whether to try again.
const RETRIED_UNAVAILABLE = new Set(["store_unavailable", "service_unavailable"]);

/** An error answer of the API (or no answer at all: code "network_error"). */
export class ApiError extends Error {
  constructor({ status = 0, code = "network_error", message = "", details = null,
                requestId = null, retryAfter = null } = {}) {
    super(message || "The request failed.");
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

// --- storage ----------------------------------------------------------------

const memory = new Map();
const storage = {
  get(key) {
    try { return window.localStorage.getItem(key); } catch { return memory.get(key) ?? null; }
  },
  set(key, value) {
    try { window.localStorage.setItem(key, value); } catch { memory.set(key, value); }
  },
};

function storedToken() {
  try {
    return JSON.parse(storage.get(TOKEN_KEY) || "null")?.token ?? null;
  } catch {
    return null;
  }
}

let guestInFlight = null;

/**
 * Return a usable bearer token: the stored one, or a new guest's.
 * ``stale`` is a token the service refused; a different stored token (another
 * call renewed it meanwhile) is used as it is.
 */
async function bearerToken(stale = null) {
  const current = storedToken();
  if (current && current !== stale) return current;
  if (!guestInFlight) {
    guestInFlight = api("/api/auth/guest", { method: "POST", auth: false })
      .then((guest) => {
        // ``expires_at`` is not read: the service says when a token stops
        // working by answering 401, and a new guest token is made then.
        storage.set(TOKEN_KEY, JSON.stringify({ token: guest.token, user_id: guest.user_id }));
        return guest.token;
      })
      .finally(() => { guestInFlight = null; });
  }
  return guestInFlight;
}

// --- idempotency ------------------------------------------------------------

/** A random UUID (v4); crypto.randomUUID needs a secure context, this does not. */
export function newKey() {
  if (typeof crypto.randomUUID === "function" && window.isSecureContext) {
    return crypto.randomUUID();
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Idempotency keys per logical request.  The player who submits the same
 * thing again after a failure (network, 503) resends the same key, so a
 * request that did go through is answered with its first result instead of
 * being played twice.  A different body is a new request with a new key.
 */
export class Intents {
  #pending = new Map();

  key(scope, body) {
    const fingerprint = JSON.stringify(body);
    const pending = this.#pending.get(scope);
    if (pending && pending.fingerprint === fingerprint) return pending.key;
    const key = newKey();
    this.#pending.set(scope, { fingerprint, key });
    return key;
  }

  done(scope) {
    this.#pending.delete(scope);
  }
}

// --- requests ---------------------------------------------------------------

/** Seconds from a Retry-After header (delta seconds or an HTTP date), or null. */
export function retryAfterSeconds(header) {
  if (!header) return null;
  const text = header.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

/** Resolve after ``ms`` milliseconds, or reject at once when ``signal`` aborts. */
export function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    const timer = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(); }, ms);
    function onAbort() { clearTimeout(timer); reject(signal.reason); }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The ApiError a failed response stands for (any body: a proxy may answer HTML). */
export async function errorFrom(response) {
  const retryAfter = retryAfterSeconds(response.headers.get("Retry-After"));
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  const error = body && typeof body.error === "object" && body.error ? body.error : {};
  return new ApiError({
    status: response.status,
    code: typeof error.code === "string" ? error.code : `http_${response.status}`,
    message: typeof error.message === "string" ? error.message : `The server answered ${response.status}.`,
    details: error.details ?? null,
    requestId: body?.request_id ?? response.headers.get("X-Request-ID"),
    retryAfter,
  });
}

function isAbort(error) {
  return error?.name === "AbortError";
}

/**
 * Call the API and return the JSON answer (null for 204); throw ApiError.
 *
 * options: method, body (sent as JSON), key (an Idempotency-Key), auth
 * (default true: send the guest token, renewing it once on 401), signal.
 * GETs, DELETEs and keyed requests are retried after a network failure and a
 * transient 503, waiting as Retry-After says.
 */
export async function api(path, { method = "GET", body, key, auth = true, signal } = {}) {
  const retryable = method === "GET" || method === "DELETE" || Boolean(key);
  let token = auth ? await bearerToken() : null;
  let renewed = false;
  let networkFailures = 0;
  let unavailable = 0;
  for (;;) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    if (key) headers["Idempotency-Key"] = key;
    let response;
    try {
      response = await fetch(path, {
        method, headers, signal, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      if (retryable && networkFailures < NETWORK_RETRIES) {
        networkFailures += 1;
        await pause(700 * 2 ** networkFailures, signal);
        continue;
      }
      throw new ApiError({ code: "network_error", message: "The server could not be reached." });
    }
    if (response.ok) {
      if (response.status === 204) return null;
      const text = await response.text();
      return text ? JSON.parse(text) : null;
    }
    const error = await errorFrom(response);
    if (error.status === 401 && auth && !renewed) {
      renewed = true;
      token = await bearerToken(token);
      continue;
    }
    const transient = (error.status === 503 && RETRIED_UNAVAILABLE.has(error.code))
      || error.code === "idempotency_conflict";  // the first try is still running
    if (retryable && transient && unavailable < UNAVAILABLE_RETRIES) {
      unavailable += 1;
      const wait = Math.min(error.retryAfter ?? 1, MAX_WAIT_SECONDS);
      await pause(Math.max(wait, 0.5) * 1000, signal);
      continue;
    }
    throw error;
  }
}

// --- the routes -------------------------------------------------------------

const enc = encodeURIComponent;

export const routes = {
  catalog: () => api("/api/catalog", { auth: false }),
  listGames: ({ limit = 12, cursor } = {}) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return api(`/api/games?${query}`);
  },
  createGame: (body, key) => api("/api/games", { method: "POST", body, key }),
  loadGame: (id, signal) => api(`/api/games/${enc(id)}`, { signal }),
  turnsBefore: (id, before, limit, signal) =>
    api(`/api/games/${enc(id)}/turns?${new URLSearchParams({ before: String(before), limit: String(limit) })}`,
        { signal }),
  act: (id, body, key) => api(`/api/games/${enc(id)}/actions`, { method: "POST", body, key }),
  retryTurn: (id, n, key) =>
    api(`/api/games/${enc(id)}/turns/${enc(n)}/retry`, { method: "POST", key }),
  chooseAlternative: (id, n, index) =>
    api(`/api/games/${enc(id)}/turns/${enc(n)}/choice`, { method: "PUT", body: { index } }),
  undoTurn: (id, key) => api(`/api/games/${enc(id)}/turns/last`, { method: "DELETE", key }),
  editTurn: (id, n, body) =>
    api(`/api/games/${enc(id)}/turns/${enc(n)}`, { method: "PUT", body }),
  retryImage: (id, n, key) =>
    api(`/api/games/${enc(id)}/turns/${enc(n)}/image`, { method: "POST", key }),
  updateGame: (id, body) => api(`/api/games/${enc(id)}`, { method: "PATCH", body }),
  listCards: (id, signal) => api(`/api/games/${enc(id)}/cards`, { signal }),
  createCard: (id, body, key) => api(`/api/games/${enc(id)}/cards`, { method: "POST", body, key }),
  updateCard: (id, cardId, body) =>
    api(`/api/games/${enc(id)}/cards/${enc(cardId)}`, { method: "PUT", body }),
  deleteCard: (id, cardId) => api(`/api/games/${enc(id)}/cards/${enc(cardId)}`, { method: "DELETE" }),
  deleteGame: (id) => api(`/api/games/${enc(id)}`, { method: "DELETE" }),
};
