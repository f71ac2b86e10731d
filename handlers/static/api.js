// The REST API as the page uses it: JSON in and out, the bearer token, errors in the contract's shape.

const TOKEN_KEY = "murmuration.token";

export class ApiError extends Error {
  constructor(status, error, headers) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "error";
    this.details = error.details || [];
    this.headers = headers;
  }
}

export const session = {
  get token() { return localStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
};

// `onUnauthorized` is called when the token stops working (logout elsewhere, expiry).
export const hooks = { onUnauthorized: () => {} };

export async function api(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (session.token) init.headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let answer;
  try {
    answer = await fetch(path, init);
  } catch {
    throw new ApiError(0, { code: "unavailable", message: "The service cannot be reached; try again in a moment." });
  }
  const text = await answer.text();
  const data = text ? JSON.parse(text) : null;
  if (!answer.ok) {
    if (answer.status === 401 && session.token && !path.startsWith("/auth/")) hooks.onUnauthorized();
    throw new ApiError(answer.status, (data && data.error) || {}, answer.headers);
  }
  return { data, headers: answer.headers, status: answer.status };
}

// A message for people: the contract's message plus the first field detail, if any.
export function explain(error) {
  if (!(error instanceof ApiError)) return String(error);
  const detail = error.details[0];
  return detail && detail.message ? `${error.message} (${detail.field || ""}: ${detail.message})` : error.message;
}
