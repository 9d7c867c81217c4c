// The console's HTTP client. A tenant signs in once (`POST /api/console/session`): the session lives in an
// HttpOnly cookie the page cannot read, and the CSRF token the session returns goes with every change.
// An operator's admin key is kept in memory only (never in storage): a reload signs the operator out.

export class ApiError extends Error {
  constructor({ status, code, message, requestId, field, details }) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.field = field;
    this.details = details;
  }
}

const auth = { csrf: null, adminKey: null, onEnded: null };

/** Called once a signed-in session is refused (expired, signed out elsewhere, key revoked). */
export function onSessionEnded(f) {
  auth.onEnded = f;
}

export function setCsrf(token) {
  auth.csrf = token;
}

export function setAdminKey(key) {
  auth.adminKey = key;
}

/** Calls the API; JSON in and out. Errors become ApiError with the contract's code and the request id. */
export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (auth.adminKey) headers.authorization = `Bearer ${auth.adminKey}`;
  else if (method !== "GET" && auth.csrf) headers["x-csrf-token"] = auth.csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError({ status: 0, code: "network", message: "" });
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: reported below */
  }
  if (!res.ok) {
    const e = (json && json.error) || {};
    if (res.status === 401 && (auth.csrf || auth.adminKey) && path !== "/api/console/session" && auth.onEnded) {
      auth.onEnded();
    }
    throw new ApiError({
      status: res.status,
      code: e.code || "http_" + res.status,
      message: e.message || text.slice(0, 200),
      requestId: e.request_id || res.headers.get("x-request-id"),
      field: e.field,
      details: e.details || e,
    });
  }
  return json;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

/** Whether a role may do what `required` names (owner ⊇ manager ⊇ viewer), as the API decides it. */
export function allows(role, required) {
  const rank = { viewer: 0, manager: 1, owner: 2 };
  return (rank[role] ?? -1) >= rank[required];
}
