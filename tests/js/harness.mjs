// What the matrix-js-sdk integration tests share: one switchboard per test
// file (started before its tests, stopped after), the SDK's log kept in a
// ring buffer for failure reports, registration through the user-interactive
// m.login.dummy flow, password login, and waiting for SDK events with a
// deadline.

import "./polyfill.mjs"; // first: the SDK needs Promise.withResolvers
import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { logger as sdkGlobalLogger } from "matrix-js-sdk/lib/logger.js";
import { rm } from "node:fs/promises";
import { buildSwitchboard, startSwitchboard } from "../lib/server.mjs";

// ---------------------------------------------------------------------------
// Logging: the SDK is chatty at info/debug level. Its lines are kept in a
// ring buffer and printed with the server's stderr only when a test fails.

/** The SDK's most recent log lines (at most 400). */
export const sdkLog = [];

function keepLog(level, prefix, msg) {
    const text = msg
        .map((m) => (m instanceof Error ? m.stack : typeof m === "string" ? m : safeJSON(m)))
        .join(" ");
    sdkLog.push(`${level} ${prefix}${text}`);
    if (sdkLog.length > 400) sdkLog.shift();
}

/** JSON.stringify, or String(v) for what it cannot encode (cycles). */
export function safeJSON(v) {
    try {
        return JSON.stringify(v);
    } catch {
        return String(v);
    }
}

/** A logger for sdk.createClient that writes to sdkLog. */
export function recordingLogger(prefix) {
    return {
        trace: (...m) => keepLog("trace", prefix, m),
        debug: (...m) => keepLog("debug", prefix, m),
        info: (...m) => keepLog("info", prefix, m),
        warn: (...m) => keepLog("warn", prefix, m),
        error: (...m) => keepLog("error", prefix, m),
        getChild: (ns) => recordingLogger(`${prefix}${ns} `),
    };
}

// Code paths that use the SDK's global (loglevel) logger rather than the
// client's: its child loggers copy the parent's methodFactory when created,
// so this sends them to the ring buffer too.
sdkGlobalLogger.methodFactory = (method, _level, name) => (...m) => keepLog(method, `[${String(name)}] `, m);
sdkGlobalLogger.setLevel("debug");

// ---------------------------------------------------------------------------
// One server per test file.

/**
 * Registers before() and after() hooks that start one switchboard for the
 * calling test file and stop it, and every client in clients, afterwards.
 * Returns { server, clients }; server is set once before() has run.
 */
export function useSwitchboard() {
    const h = { server: undefined, clients: [] };
    let binDir;
    before(async () => {
        const built = await buildSwitchboard();
        binDir = built.dir;
        h.server = await startSwitchboard(built.bin);
    });
    after(async () => {
        for (const c of h.clients) c.stopClient();
        if (h.server) await h.server.stop(); // no-op when a test already stopped it
        if (binDir) await rm(binDir, { recursive: true, force: true });
    });
    return h;
}

// ---------------------------------------------------------------------------
// Clients.

/**
 * Registers username on server through the user-interactive flow: a first
 * request without auth must be answered 401 with a session offering
 * m.login.dummy; the second completes it. Returns the /register response.
 */
export async function register(server, username, password) {
    const anon = sdk.createClient({ baseUrl: server.baseUrl, logger: recordingLogger(`[anon ${username}] `) });
    let uia;
    try {
        await anon.registerRequest({ username, password });
        assert.fail("POST /register without auth succeeded; want 401 with user-interactive auth flows");
    } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.equal(err.httpStatus, 401, `register without auth: ${err}`);
        uia = err.data;
    }
    assert.equal(typeof uia?.session, "string", `401 body has no session: ${safeJSON(uia)}`);
    assert.ok(
        uia.flows?.some((f) => f.stages?.length === 1 && f.stages[0] === "m.login.dummy"),
        `401 flows offer no m.login.dummy stage: ${safeJSON(uia.flows)}`,
    );
    const res = await anon.register(username, password, uia.session, {
        type: "m.login.dummy",
        session: uia.session,
    });
    assert.equal(res.user_id, `@${username}:${server.serverName}`);
    assert.equal(typeof res.access_token, "string");
    assert.equal(typeof res.device_id, "string");
    return res;
}

/**
 * A client (not started) for the session res ({ user_id, access_token,
 * device_id }, as /register and /login answer), added to clients so that
 * useSwitchboard's after() stops it.
 */
export function sessionClient(server, clients, res, label) {
    const client = sdk.createClient({
        baseUrl: server.baseUrl,
        userId: res.user_id,
        accessToken: res.access_token,
        deviceId: res.device_id,
        logger: recordingLogger(`[${label}] `),
    });
    clients.push(client);
    return client;
}

/**
 * Logs username in with a password (a new device) and returns
 * { client, login } with the client not started.
 */
export async function login(server, clients, username, password, label) {
    const anon = sdk.createClient({ baseUrl: server.baseUrl, logger: recordingLogger(`[anon ${label}] `) });
    const res = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password,
        initial_device_display_name: `js-sdk ${label}`,
    });
    assert.equal(res.user_id, `@${username}:${server.serverName}`);
    return { client: sessionClient(server, clients, res, label), login: res };
}

/** Starts client's /sync loop and waits (up to ms) for its first sync. */
export async function startAndSync(client, label, ms) {
    const prepared = nextEmit(
        client,
        sdk.ClientEvent.Sync,
        (state) => {
            if (state === "ERROR") throw new Error(`${label}: first /sync failed: ${client.getSyncStateData()?.error}`);
            return state === "PREPARED";
        },
        `${label}'s first sync`,
        ms,
    );
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
}

// ---------------------------------------------------------------------------
// Waiting for SDK events.

/**
 * Resolves with the arguments of the first `event` emission of emitter for
 * which match(...args) is true; rejects after ms. Register it before doing
 * the thing that causes the emission.
 */
export function nextEmit(emitter, event, match, what, ms) {
    return new Promise((resolve, reject) => {
        const onEvent = (...args) => {
            let ok;
            try {
                ok = match(...args);
            } catch (err) {
                cleanup();
                reject(err);
                return;
            }
            if (ok) {
                cleanup();
                resolve(args);
            }
        };
        const timer = setTimeout(() => {
            cleanup();
            reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
        }, ms);
        const cleanup = () => {
            clearTimeout(timer);
            emitter.off(event, onEvent);
        };
        emitter.on(event, onEvent);
    });
}

/**
 * Resolves with the next live event of type in roomId on client's timeline
 * (that is, delivered by its sync loop) for which match(event) is true;
 * rejects after ms.
 */
export function nextTimelineEvent(client, roomId, type, match, what, ms) {
    return nextEmit(
        client,
        sdk.RoomEvent.Timeline,
        (ev, room, toStart, removed) =>
            room?.roomId === roomId && !toStart && !removed && ev.getType() === type && match(ev),
        what,
        ms,
    ).then(([ev]) => ev);
}

/**
 * Returns step(name, fn): it() whose body, on the file's first failure,
 * prints the server's stderr (h from useSwitchboard) and the SDK's recent
 * log lines before rethrowing.
 */
export function stepper(h) {
    let dumped = false;
    return function step(name, fn) {
        it(name, async (t) => {
            try {
                await fn(t);
            } catch (err) {
                if (!dumped && h.server) {
                    dumped = true;
                    process.stderr.write(
                        `\n--- switchboard stderr (test "${name}" failed) ---\n${h.server.stderr()}` +
                            `\n--- matrix-js-sdk log (last ${sdkLog.length} lines) ---\n${sdkLog.join("\n")}\n---\n`,
                    );
                }
                throw err;
            }
        });
    };
}
