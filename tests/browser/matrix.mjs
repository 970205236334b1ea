// Client-server API calls the browser tests make outside the pages: users
// registered on a dev server (open registration) and calls as them, each
// on the user's own server.

import assert from "node:assert/strict";

/** Registers username on the dev server at base; the user remembers base. */
export async function register(base, username) {
    const res = await fetch(`${base}/_matrix/client/v3/register`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ username, password: "correct horse battery staple", auth: { type: "m.login.dummy" } }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    return { ...body, base };
}

/** A client-server API call as user on the user's own server; wants 200. */
export async function api(user, method, p, body) {
    const res = await fetch(`${user.base}/_matrix/client/v3${p}`, {
        method, headers: { "content-type": "application/json", authorization: `Bearer ${user.access_token}` },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const out = await res.json();
    assert.equal(res.status, 200, `${method} ${p}: ${JSON.stringify(out)}`);
    return out;
}
