// MatrixRTC (the way Element Call does it) against Switchboard's homeserver,
// with matrix-js-sdk's own MatrixRTCSession: focus discovery (MSC4143),
// a call membership kept alive by an MSC4140 delayed leave that the server
// sends when the client dies, an explicit leave, and the sticky-event
// membership of MSC4354 seen by another user's /sync.

import "./polyfill.mjs"; // first: the SDK needs Promise.withResolvers
import { describe } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { MatrixRTCSession } from "matrix-js-sdk/lib/matrixrtc/MatrixRTCSession.js";
import { waitUntil } from "../lib/server.mjs";
import { recordingLogger, stepper, useSwitchboard } from "./harness.mjs";
import { request } from "node:http";
import { randomBytes } from "node:crypto";

/** How long any one thing may take to show up. */
const SEEN_WITHIN_MS = 20000;

// One server for this file, stopped (with every client) after it.
const h = useSwitchboard();
const clients = h.clients;

const step = stepper(h);

/** Registers username (m.login.dummy) and returns a started, synced client. */
async function userClient(username) {
    const anon = sdk.createClient({ baseUrl: h.server.baseUrl, logger: recordingLogger(`[anon ${username}] `) });
    let session;
    try {
        await anon.registerRequest({ username, password: "correct horse battery staple" });
    } catch (err) {
        session = err.data?.session;
    }
    assert.equal(typeof session, "string", "register: no user-interactive session");
    const res = await anon.register(username, "correct horse battery staple", session, { type: "m.login.dummy", session });
    const client = sdk.createClient({
        baseUrl: h.server.baseUrl,
        userId: res.user_id,
        accessToken: res.access_token,
        deviceId: res.device_id,
        logger: recordingLogger(`[${username}] `),
    });
    clients.push(client);
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state) => {
            if (state === "PREPARED") resolve();
            if (state === "ERROR") reject(new Error(`${username}: first /sync failed`));
        });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    return client;
}

/** The content of a state event as the server has it now, {} when absent. */
async function stateNow(client, roomId, type, key) {
    try {
        return await client.getStateEvent(roomId, type, key);
    } catch (err) {
        if (err.httpStatus === 404) return undefined;
        throw err;
    }
}

/**
 * Opens a WebSocket to url (ws://) by hand and resolves with the raw
 * socket once the server's first frame (LiveKit's JoinResponse) arrived:
 * destroying it is a client whose connection died, with no close frame.
 */
function openSignal(url) {
    return new Promise((resolve, reject) => {
        const req = request(url.replace(/^ws:/, "http:"), {
            headers: {
                Connection: "Upgrade",
                Upgrade: "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
            },
        });
        req.on("upgrade", (_res, socket, head) => {
            if (head.length > 0) resolve(socket);
            else socket.once("data", () => resolve(socket));
            socket.on("error", () => {});
        });
        req.on("response", (res) => reject(new Error(`signal socket refused: ${res.statusCode}`)));
        req.on("error", reject);
        req.end();
    });
}

describe("MatrixRTC with matrix-js-sdk against switchboard", () => {
    const suffix = `${process.pid}${Date.now().toString(36)}`.toLowerCase();
    let alice, bob, carol, roomId, transport;

    step("the server advertises delayed and sticky events and its LiveKit focus", async () => {
        [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => userClient(`${n}${suffix}`)));
        assert.equal(await alice.doesServerSupportUnstableFeature("org.matrix.msc4140"), true);
        assert.equal(await alice.doesServerSupportUnstableFeature("org.matrix.msc4354"), true);
        const transports = await alice._unstable_getRTCTransports();
        // In --dev the public base URL is the client listener itself.
        assert.deepEqual(transports, [{ type: "livekit", livekit_service_url: `${h.server.baseUrl}/livekit/jwt` }]);
        transport = transports[0];
        const wk = await (await fetch(`${h.server.baseUrl}/.well-known/matrix/client`)).json();
        assert.deepEqual(wk["org.matrix.msc4143.rtc_foci"], transports);
    });

    step("a joined session's membership ends by the server's delayed leave when the client dies", async () => {
        roomId = (await alice.createRoom({ preset: "public_chat", name: "rtc" })).room_id;
        await bob.joinRoom(roomId);
        await carol.joinRoom(roomId);
        const room = await waitUntil("alice's room", SEEN_WITHIN_MS, () => alice.getRoom(roomId));
        const session = alice.matrixRTC.getRoomSession(room);
        session.joinRoomSession([transport], undefined, { delayedLeaveEventDelayMs: 3000, delayedLeaveEventRestartMs: 1000 });
        const key = `_${alice.getUserId()}_${alice.getDeviceId()}_m.call`;
        const joined = await waitUntil("alice's call membership", SEEN_WITHIN_MS, async () => {
            const c = await stateNow(bob, roomId, "org.matrix.msc3401.call.member", key);
            return c?.application === "m.call" ? c : undefined;
        });
        assert.deepEqual(joined.foci_preferred, [transport]);
        const delayed = await alice._unstable_getDelayedEvents();
        assert.ok(
            delayed.delayed_events.some((d) => d.state_key === key && d.delay === 3000),
            `no delayed leave scheduled: ${JSON.stringify(delayed)}`,
        );
        // The SDK restarts the delayed leave every second; it survives
        // several delays' worth of time.
        await new Promise((r) => setTimeout(r, 4000));
        assert.equal((await stateNow(bob, roomId, "org.matrix.msc3401.call.member", key))?.application, "m.call");

        // The client dies: no more restarts, no leave.
        alice.http.opts.fetchFn = () => Promise.reject(new Error("network gone"));
        alice.stopClient();
        await waitUntil("alice's membership emptied by the delayed leave", SEEN_WITHIN_MS, async () => {
            const c = await stateNow(bob, roomId, "org.matrix.msc3401.call.member", key);
            return c !== undefined && Object.keys(c).length === 0;
        });
    });

    step("leaving sends the delayed leave at once", async () => {
        const room = await waitUntil("bob's room", SEEN_WITHIN_MS, () => bob.getRoom(roomId));
        const session = bob.matrixRTC.getRoomSession(room);
        // A delay far past the deadline below: only the leave can end it.
        session.joinRoomSession([transport], undefined, { delayedLeaveEventDelayMs: 120000 });
        const key = `_${bob.getUserId()}_${bob.getDeviceId()}_m.call`;
        await waitUntil("bob's call membership", SEEN_WITHIN_MS, async () =>
            (await stateNow(carol, roomId, "org.matrix.msc3401.call.member", key))?.application === "m.call",
        );
        assert.equal(await session.leaveRoomSession(SEEN_WITHIN_MS), true);
        await waitUntil("bob's membership emptied by leaving", SEEN_WITHIN_MS, async () => {
            const c = await stateNow(carol, roomId, "org.matrix.msc3401.call.member", key);
            return c !== undefined && Object.keys(c).length === 0;
        });
        assert.equal((await bob._unstable_getDelayedEvents()).delayed_events.length, 0);
    });

    step("get_token and delegate_delayed_leave (MSC4195): the leave is sent when the SFU socket dies", async () => {
        const sfu = `ws://${h.server.addrs.client}/livekit/sfu`;
        const key = `_${carol.getUserId()}_${carol.getDeviceId()}_m.call`;
        const member = { id: `carol-${suffix}`, claimed_device_id: carol.getDeviceId() };
        const body = { url: sfu, room_id: roomId, slot_id: "m.call#ROOM", member };
        await assert.rejects(carol._unstable_getLivekitToken({ ...body, url: "wss://elsewhere.example/sfu" }), (err) => err.errcode === "M_INVALID_PARAM");
        const { jwt } = await carol._unstable_getLivekitToken(body);
        assert.equal(typeof jwt, "string");
        await carol.sendStateEvent(roomId, "org.matrix.msc3401.call.member", {
            application: "m.call", call_id: "", scope: "m.room", device_id: carol.getDeviceId(),
            focus_active: { type: "livekit", focus_selection: "oldest_membership" }, foci_preferred: [transport],
        }, key);
        // An hour: only the server's delegated send can end it in time.
        const { delay_id } = await carol._unstable_sendDelayedStateEvent(roomId, { delay: 3600000 }, "org.matrix.msc3401.call.member", {}, key);
        await carol._unstable_delegateDelayedLeave({ ...body, delay_id });
        const socket = await openSignal(`${sfu}/rtc/v1?access_token=${encodeURIComponent(jwt)}`);
        assert.equal((await stateNow(bob, roomId, "org.matrix.msc3401.call.member", key))?.application, "m.call");
        socket.destroy();
        await waitUntil("carol's membership emptied by the delegated leave", SEEN_WITHIN_MS, async () => {
            const c = await stateNow(bob, roomId, "org.matrix.msc3401.call.member", key);
            return c !== undefined && Object.keys(c).length === 0;
        });
    });

    step("a sticky-event membership (MSC4354) reaches another user's sync", async () => {
        const room = await waitUntil("bob's room", SEEN_WITHIN_MS, () => bob.getRoom(roomId));
        const session = bob.matrixRTC.getRoomSession(room);
        session.joinRoomSession([transport], transport, { unstableSendStickyEvents: true, delayedLeaveEventDelayMs: 120000 });
        const carolRoom = carol.getRoom(roomId);
        const sticky = await waitUntil("bob's sticky rtc.member at carol", SEEN_WITHIN_MS, () =>
            Array.from(carolRoom._unstable_getStickyEvents()).find((e) => e.getSender() === bob.getUserId() && e.getType().endsWith("rtc.member")),
        );
        assert.ok(sticky.unstableStickyInfo?.duration_ms > 0, "no sticky duration on the event");
        const members = await MatrixRTCSession.sessionMembershipsForSlot(carolRoom, { application: "m.call", id: "ROOM" });
        assert.ok(
            members.some((m) => m.sender === bob.getUserId()),
            `carol sees no RTC membership of bob: ${members.map((m) => m.sender)}`,
        );
        assert.equal(await session.leaveRoomSession(SEEN_WITHIN_MS), true);
    });
});
