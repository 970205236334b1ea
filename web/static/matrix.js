// A small Matrix client for the browser: the Client-Server API over fetch
// and a /sync long-poll loop (spec: Client-Server API, "Syncing"). It keeps
// the rooms the user is in (state, members, a plain timeline) and hands
// to-device messages and timeline events to whoever listens.

/** An error from the server (spec: "Standard error response") or the network. */
export class MatrixError extends Error {
    constructor(message, { status = 0, errcode = "", retryAfterMs = 0, network = false, data = {} } = {}) {
        super(message);
        this.status = status;
        this.errcode = errcode;
        this.retryAfterMs = retryAfterMs;
        this.network = network;
        this.data = data;
    }
}

/** Joins the parts of a URL path, escaping each. */
function path(...parts) {
    return parts.map((p) => encodeURIComponent(p)).join("/");
}

let txnCounter = 0;
function txnId() {
    txnCounter++;
    return `sb${Date.now().toString(36)}.${txnCounter}.${Math.random().toString(36).slice(2, 8)}`;
}

/** Removes a trailing slash and checks that baseUrl is an http(s) URL. */
export function normalizeBaseUrl(baseUrl) {
    let u = String(baseUrl || "").trim();
    if (u === "") throw new MatrixError("Enter the server address, for example https://matrix.example.org.");
    if (!/^https?:\/\//i.test(u)) u = `https://${u}`;
    let parsed;
    try {
        parsed = new URL(u);
    } catch {
        throw new MatrixError(`"${baseUrl}" is not a server address.`);
    }
    return parsed.origin + parsed.pathname.replace(/\/+$/, "");
}

/**
 * Sends one request to baseUrl. Network failures and non-JSON answers
 * become MatrixErrors with a message a person can act on.
 */
export async function request(baseUrl, method, urlPath, { body, query, token, signal, keepalive = false } = {}) {
    let url = `${baseUrl}${urlPath}`;
    if (query) {
        const q = new URLSearchParams();
        for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) q.set(k, String(v));
        const s = q.toString();
        if (s) url += `?${s}`;
    }
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
        res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, keepalive });
    } catch (err) {
        if (err.name === "AbortError") throw err;
        throw new MatrixError(`Cannot reach the server at ${baseUrl}. Check the address and your connection.`, { network: true });
    }
    let data = {};
    const text = await res.text().catch(() => "");
    if (text) {
        try {
            data = JSON.parse(text);
        } catch {
            if (!res.ok) throw new MatrixError(`The server answered with an error (HTTP ${res.status}).`, { status: res.status });
            throw new MatrixError(`${baseUrl} does not look like a Matrix server.`, { status: res.status });
        }
    }
    if (!res.ok) {
        throw new MatrixError(data.error || `The server answered with an error (HTTP ${res.status}).`, {
            status: res.status,
            errcode: data.errcode || "",
            retryAfterMs: data.retry_after_ms || 0,
            data,
        });
    }
    return data;
}

/** Explains an error from login or registration in plain words. */
export function explainAuthError(err, mode) {
    if (!(err instanceof MatrixError)) return String(err?.message ?? err);
    if (err.network) return err.message;
    switch (err.errcode) {
        case "M_FORBIDDEN":
            return mode === "login" ? "Wrong username or password." : err.message;
        case "M_USER_IN_USE":
            return "That username is taken. Pick another, or sign in instead.";
        case "M_INVALID_USERNAME":
            return "Usernames may use lowercase letters, digits and . _ = - / only.";
        case "M_WEAK_PASSWORD":
            return "That password is too weak. Try a longer one.";
        case "M_LIMIT_EXCEEDED":
            return `Too many attempts. Try again in ${Math.ceil((err.retryAfterMs || 1000) / 1000)} seconds.`;
        case "M_USER_DEACTIVATED":
            return "This account has been deactivated.";
        case "M_UNKNOWN_TOKEN":
            return "You were signed out. Sign in again.";
    }
    if (err.status === 404 || err.status === 405) return "That address is not a Matrix server (no client API there).";
    return err.message;
}

/** Signs in with a password (spec: "Login", m.login.password). */
export async function login(baseUrl, username, password) {
    const identifier = { type: "m.id.user", user: username };
    const res = await request(baseUrl, "POST", "/_matrix/client/v3/login", {
        body: { type: "m.login.password", identifier, password, initial_device_display_name: "Switchboard web" },
    });
    return { baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
}

/**
 * Creates an account (spec: "Account registration"): m.login.dummy, or a
 * registration token when the server asks for one.
 */
export async function register(baseUrl, username, password, regToken) {
    const body = { username, password, initial_device_display_name: "Switchboard web" };
    let res;
    try {
        res = await request(baseUrl, "POST", "/_matrix/client/v3/register", { body: { ...body, auth: { type: "m.login.dummy" } } });
    } catch (err) {
        if (!(err instanceof MatrixError) || err.status !== 401 || !err.data.flows) throw err;
        const stages = err.data.flows.map((f) => f.stages || []);
        const session = err.data.session;
        if (stages.some((s) => s.length === 1 && s[0] === "m.login.registration_token")) {
            if (!regToken) {
                throw new MatrixError("This server needs a registration token to create accounts. Ask its admin for one.", { errcode: "SB_NEED_TOKEN" });
            }
            res = await request(baseUrl, "POST", "/_matrix/client/v3/register", {
                body: { ...body, auth: { type: "m.login.registration_token", token: regToken, session } },
            });
        } else if (stages.some((s) => s.length === 1 && s[0] === "m.login.dummy")) {
            res = await request(baseUrl, "POST", "/_matrix/client/v3/register", { body: { ...body, auth: { type: "m.login.dummy", session } } });
        } else {
            throw new MatrixError("This server does not let people create accounts here.", { status: 401 });
        }
    }
    return { baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
}

/** The part of a user ID after the first colon (spec: "User Identifiers"). */
export function serverName(userId) {
    return userId.slice(userId.indexOf(":") + 1);
}

/** A room as the client knows it from /sync. */
export class Room {
    constructor(id) {
        this.id = id;
        this.membership = "join";
        /** state: "type\u0000stateKey" → event */
        this.state = new Map();
        this.timeline = [];
        this.inviter = "";
        this.lastActive = 0;
        this.unread = 0;
    }

    stateEvent(type, key = "") {
        return this.state.get(`${type}\u0000${key}`);
    }

    stateOfType(type) {
        const out = [];
        for (const ev of this.state.values()) if (ev.type === type) out.push(ev);
        return out;
    }

    /** Members (user IDs) with membership m ("join" by default). */
    members(m = "join") {
        return this.stateOfType("m.room.member")
            .filter((ev) => ev.content?.membership === m)
            .map((ev) => ev.state_key);
    }

    memberName(userId) {
        const ev = this.stateEvent("m.room.member", userId);
        const n = ev?.content?.displayname;
        return typeof n === "string" && n.trim() !== "" ? n : userId;
    }

    /** A name for the room (spec: "Calculating the display name for a room", simplified). */
    displayName(myUserId) {
        const name = this.stateEvent("m.room.name")?.content?.name;
        if (typeof name === "string" && name.trim() !== "") return name;
        const alias = this.stateEvent("m.room.canonical_alias")?.content?.alias;
        if (typeof alias === "string" && alias !== "") return alias;
        const others = [...this.members("join"), ...this.members("invite")].filter((u) => u !== myUserId);
        if (others.length > 0) {
            const names = others.slice(0, 3).map((u) => this.memberName(u));
            return others.length > 3 ? `${names.join(", ")} and ${others.length - 3} more` : names.join(" and ");
        }
        return this.id;
    }

    addState(ev) {
        if (typeof ev?.type !== "string" || typeof ev.state_key !== "string") return;
        this.state.set(`${ev.type}\u0000${ev.state_key}`, ev);
    }
}

/**
 * A signed-in session: the Client-Server API with this user's token and
 * the /sync loop. Events: "sync" (after each /sync; detail.initial),
 * "rooms" (the room list changed), "timeline" (detail: {room, event,
 * live}), "todevice" (detail: event), "state" (detail: {room, event}),
 * "connection" (detail: {ok, error}).
 */
export class Client extends EventTarget {
    constructor({ baseUrl, userId, accessToken, deviceId }) {
        super();
        this.baseUrl = baseUrl;
        this.userId = userId;
        this.accessToken = accessToken;
        this.deviceId = deviceId;
        this.rooms = new Map();
        this.since = undefined;
        this.running = false;
        this.connected = true;
        this.abort = undefined;
        this.displayName = "";
    }

    request(method, urlPath, opts = {}) {
        // While the page unloads, requests must outlive it (fetch keepalive).
        return request(this.baseUrl, method, urlPath, { ...opts, token: this.accessToken, keepalive: this.unloading === true });
    }

    // The API calls the client uses, by spec section.

    whoami() {
        return this.request("GET", "/_matrix/client/v3/account/whoami");
    }

    async profileName(userId) {
        try {
            const p = await this.request("GET", `/_matrix/client/v3/profile/${path(userId)}`);
            return p.displayname || "";
        } catch {
            return "";
        }
    }

    createRoom({ name, invite = [], isDirect = false, preset = "private_chat" }) {
        const body = { preset, invite, is_direct: isDirect };
        if (name) body.name = name;
        // Members may publish their group call membership and start calls
        // (MSC3401 m.call / m.call.member state).
        body.power_level_content_override = {
            events: {
                "m.call.member": 0,
                "org.matrix.msc3401.call.member": 0,
                "m.call": 0,
                "org.matrix.msc3401.call": 0,
            },
        };
        return this.request("POST", "/_matrix/client/v3/createRoom", { body });
    }

    invite(roomId, userId) {
        return this.request("POST", `/_matrix/client/v3/rooms/${path(roomId)}/invite`, { body: { user_id: userId } });
    }

    join(roomIdOrAlias) {
        return this.request("POST", `/_matrix/client/v3/join/${path(roomIdOrAlias)}`, { body: {} });
    }

    leave(roomId) {
        return this.request("POST", `/_matrix/client/v3/rooms/${path(roomId)}/leave`, { body: {} });
    }

    sendEvent(roomId, type, content) {
        return this.request("PUT", `/_matrix/client/v3/rooms/${path(roomId)}/send/${path(type)}/${path(txnId())}`, { body: content });
    }

    sendState(roomId, type, stateKey, content) {
        return this.request("PUT", `/_matrix/client/v3/rooms/${path(roomId)}/state/${path(type)}/${path(stateKey)}`, { body: content });
    }

    /** Sends to-device messages: messages is {userId: {deviceId: content}}. */
    sendToDevice(type, messages) {
        return this.request("PUT", `/_matrix/client/v3/sendToDevice/${path(type)}/${path(txnId())}`, { body: { messages } });
    }

    /** TURN servers (spec: "Voice over IP", GET /voip/turnServer) as RTCIceServers. */
    async iceServers() {
        const t = await this.request("GET", "/_matrix/client/v3/voip/turnServer");
        if (!Array.isArray(t.uris) || t.uris.length === 0) return [];
        return [{ urls: t.uris, username: t.username, credential: t.password }];
    }

    logout() {
        return this.request("POST", "/_matrix/client/v3/logout", { body: {} });
    }

    /** Starts the /sync loop; resolves after the first sync. */
    async start() {
        this.running = true;
        this.displayName = await this.profileName(this.userId);
        await this.syncOnce(0);
        this.loop();
    }

    stop() {
        this.running = false;
        this.abort?.abort();
    }

    async loop() {
        let backoff = 500;
        while (this.running) {
            try {
                await this.syncOnce(30000);
                backoff = 500;
                if (!this.connected) {
                    this.connected = true;
                    this.emit("connection", { ok: true });
                }
            } catch (err) {
                if (!this.running) return;
                if (err instanceof MatrixError && err.errcode === "M_UNKNOWN_TOKEN") {
                    this.running = false;
                    this.emit("connection", { ok: false, fatal: true, error: "You were signed out (your session ended). Sign in again." });
                    return;
                }
                this.connected = false;
                this.emit("connection", { ok: false, error: err.message, retryMs: backoff });
                await new Promise((r) => setTimeout(r, backoff));
                backoff = Math.min(backoff * 2, 15000);
            }
        }
    }

    async syncOnce(timeout) {
        this.abort = new AbortController();
        // Guard against a proxy that drops the long poll silently.
        const guard = setTimeout(() => this.abort.abort(), timeout + 20000);
        let res;
        try {
            res = await this.request("GET", "/_matrix/client/v3/sync", {
                query: {
                    since: this.since,
                    timeout: this.since ? timeout : 0,
                    filter: this.since ? undefined : JSON.stringify({ room: { timeline: { limit: 50 } } }),
                },
                signal: this.abort.signal,
            });
        } catch (err) {
            if (err.name === "AbortError") throw new MatrixError("The connection to the server timed out.", { network: true });
            throw err;
        } finally {
            clearTimeout(guard);
        }
        const initial = this.since === undefined;
        this.since = res.next_batch;
        this.apply(res, initial);
        this.emit("sync", { initial });
    }

    emit(type, detail) {
        this.dispatchEvent(new CustomEvent(type, { detail }));
    }

    room(roomId) {
        let r = this.rooms.get(roomId);
        if (!r) {
            r = new Room(roomId);
            this.rooms.set(roomId, r);
        }
        return r;
    }

    apply(res, initial) {
        let roomsChanged = false;
        const joined = res.rooms?.join ?? {};
        for (const [roomId, jr] of Object.entries(joined)) {
            const room = this.room(roomId);
            if (room.membership !== "join") roomsChanged = true;
            room.membership = "join";
            for (const ev of jr.state?.events ?? []) {
                room.addState(ev);
                roomsChanged = true;
            }
            const tl = jr.timeline?.events ?? [];
            if (jr.timeline?.limited) room.timeline = [];
            // State first, so that names are known when events are shown.
            for (const ev of tl) if (typeof ev.state_key === "string") room.addState(ev);
            for (const ev of tl) {
                ev.room_id = roomId;
                if (typeof ev.state_key === "string") {
                    roomsChanged = true;
                    this.emit("state", { room, event: ev });
                }
                room.timeline.push(ev);
                if (room.timeline.length > 500) room.timeline.shift();
                room.lastActive = Math.max(room.lastActive, ev.origin_server_ts || 0);
                if (!initial && ev.sender !== this.userId && ev.type === "m.room.message") room.unread++;
                this.emit("timeline", { room, event: ev, live: !initial });
            }
            if (tl.length > 0) roomsChanged = true;
        }
        for (const [roomId, ir] of Object.entries(res.rooms?.invite ?? {})) {
            const room = this.room(roomId);
            room.membership = "invite";
            for (const ev of ir.invite_state?.events ?? []) {
                room.addState(ev);
                if (ev.type === "m.room.member" && ev.state_key === this.userId) room.inviter = ev.sender;
            }
            room.lastActive = Math.max(room.lastActive, Date.now());
            roomsChanged = true;
        }
        for (const roomId of Object.keys(res.rooms?.leave ?? {})) {
            if (this.rooms.delete(roomId)) roomsChanged = true;
        }
        for (const ev of res.to_device?.events ?? []) this.emit("todevice", ev);
        if (roomsChanged || initial) this.emit("rooms", {});
    }

    /** Rooms the user is in or invited to, most recently active first. */
    roomList() {
        return [...this.rooms.values()].sort((a, b) => {
            if (a.membership !== b.membership) return a.membership === "invite" ? -1 : 1;
            return b.lastActive - a.lastActive;
        });
    }
}
