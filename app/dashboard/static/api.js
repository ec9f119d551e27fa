// Pylon's JSON routes, called with the session's token as a bearer token (never in a URL).

const TOKEN_KEY = "pylon.dashboard.token";

export class Unauthorized extends Error {}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// GET a JSON route. 401 and 403 become `Unauthorized` (the caller signs out); other failures an Error
// with Pylon's `detail`. `accept` lists statuses whose body is data too (/ready answers 503 when down).
export async function getJSON(path, token, accept = []) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    cache: "no-store",
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) {
    throw new Unauthorized(body.detail || `HTTP ${response.status}`);
  }
  if (!response.ok && !accept.includes(response.status)) {
    throw new Error(body.detail || `${path}: HTTP ${response.status}`);
  }
  return body;
}
