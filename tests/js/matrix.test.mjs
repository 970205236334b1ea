// Integration test of Switchboard's Matrix homeserver with matrix-js-sdk, the
// real client library: two users register (m.login.dummy), log in, create a
// room, invite, join, exchange messages, the full 1:1 VoIP call sequence
// (Matrix client-server API v1.x section "Voice over IP": m.call.invite,
// m.call.candidates, m.call.answer, m.call.select_answer, m.call.hangup),
// to-device messages and typing, each seen by the other side's /sync; then
// bad input through fetch against the same server.

import { describe } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import * as harness from "./harness.mjs";
import { recordingLogger, safeJSON } from "./harness.mjs";

/** How long any one thing may take to show up on the other side. */
const SEEN_WITHIN_MS = 20000;

// One server per run (harness.mjs); the SDK's log goes to harness.sdkLog.
const h = harness.useSwitchboard();
const { clients } = h;

const step = harness.stepper(h);

// ---------------------------------------------------------------------------
// Helpers.

/** harness.nextEmit, waiting SEEN_WITHIN_MS unless told. */
function nextEmit(emitter, event, match, what, ms = SEEN_WITHIN_MS) {
    return harness.nextEmit(emitter, event, match, what, ms);
}

/** harness.nextTimelineEvent, waiting SEEN_WITHIN_MS. */
function nextTimelineEvent(client, roomId, type, match, what) {
    return harness.nextTimelineEvent(client, roomId, type, match, what, SEEN_WITHIN_MS);
}

/**
 * Asserts ev carries unsigned.age as a non-negative integer number of
 * milliseconds. sentAt (Date.now() before the send request) bounds it: the
 * event was created after sentAt and served before now, so on this one
 * clock origin_server_ts is in [sentAt, now] and age is at most now -
 * sentAt (1 s of slack for rounding). These catch an age in the wrong unit
 * or from the wrong origin; they are not timing assertions.
 */
function assertAge(ev, what, sentAt) {
    const now = Date.now();
    const age = ev.getAge();
    assert.equal(typeof age, "number", `${what}: getAge() is ${age}, want a number`);
    assert.ok(Number.isInteger(age) && age >= 0, `${what}: getAge() is ${age}, want a non-negative integer`);
    const raw = ev.event.unsigned?.age;
    assert.equal(raw, age, `${what}: unsigned.age is ${raw}`);
    if (sentAt !== undefined) {
        const ts = ev.getTs();
        assert.ok(ts >= sentAt - 1000 && ts <= now + 1000, `${what}: origin_server_ts ${ts} outside [${sentAt}, ${now}]`);
        assert.ok(age <= now - sentAt + 1000, `${what}: unsigned.age ${age} ms is more than the ${now - sentAt} ms since it was sent`);
    }
}

/** Raw client-server API request with fetch; returns { status, body }. */
async function api(method, path, { token, body, rawBody } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload;
    if (rawBody !== undefined) {
        payload = rawBody;
        headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
        payload = JSON.stringify(body);
        headers["Content-Type"] = "application/json";
    }
    const res = await fetch(h.server.baseUrl + path, {
        method,
        headers,
        body: payload,
        signal: AbortSignal.timeout(SEEN_WITHIN_MS),
    });
    const text = await res.text();
    let json;
    try {
        json = JSON.parse(text);
    } catch {
        json = undefined;
    }
    return { status: res.status, body: json, text };
}

/** harness.register against this file's server. */
function register(username, password) {
    return harness.register(h.server, username, password);
}

/** Logs in with a password and returns a started client (first sync done). */
async function loginAndStart(username, password, label) {
    const { client, login } = await harness.login(h.server, clients, username, password, label);
    await harness.startAndSync(client, label, SEEN_WITHIN_MS);
    const who = await client.whoami();
    assert.equal(who.user_id, login.user_id);
    assert.equal(who.device_id, login.device_id);
    return { client, token: login.access_token, userId: login.user_id, deviceId: login.device_id };
}

// ---------------------------------------------------------------------------
// The test.

describe("matrix-js-sdk against switchboard", () => {
    const suffix = `${process.pid}${Date.now().toString(36)}`.toLowerCase();
    const users = { alice: `alice${suffix}`, bob: `bob${suffix}` };
    const password = "correct horse battery staple";
    let alice, bob, roomId;

    step("two users register with m.login.dummy and log in", async () => {
        const [ra, rb] = await Promise.all([register(users.alice, password), register(users.bob, password)]);
        assert.notEqual(ra.user_id, rb.user_id);
        alice = await loginAndStart(users.alice, password, "alice");
        bob = await loginAndStart(users.bob, password, "bob");
        // Logging in made a new device, not the registration's.
        assert.notEqual(alice.deviceId, ra.device_id);
        assert.notEqual(bob.deviceId, rb.device_id);
    });

    step("alice creates a room, invites bob, bob joins", async () => {
        const created = await alice.client.createRoom({ preset: "private_chat", name: "switchboard js test" });
        roomId = created.room_id;
        assert.match(roomId, /^!.+:localhost$/);

        // ClientEvent.Room comes once bob's /sync has stored the invited room.
        const invited = nextEmit(
            bob.client,
            sdk.ClientEvent.Room,
            (room) => room.roomId === roomId,
            "bob's /sync to deliver the invite",
        );
        await alice.client.invite(roomId, bob.userId);
        const [invitedRoom] = await invited;
        assert.equal(invitedRoom.getMyMembership(), "invite");
        const inviteEv = invitedRoom.getMember(bob.userId)?.events.member;
        assert.equal(inviteEv?.getSender(), alice.userId, "bob's invite event is not from alice");
        assert.equal(inviteEv.getContent().membership, "invite");

        const joinSeen = nextEmit(
            alice.client,
            sdk.RoomMemberEvent.Membership,
            (ev, member) => member.roomId === roomId && member.userId === bob.userId && member.membership === "join",
            "alice's /sync to deliver bob's join",
        );
        const joinedAt = Date.now();
        const room = await bob.client.joinRoom(roomId);
        assert.equal(room.roomId, roomId);
        const [joinEv] = await joinSeen;
        assert.equal(joinEv.getSender(), bob.userId);
        assertAge(joinEv, "bob's join as seen by alice", joinedAt);
        await waitForMembership(bob.client, roomId, "join", "bob's own /sync to show him joined");
        assert.deepEqual(
            alice.client.getRoom(roomId).getJoinedMembers().map((m) => m.userId).sort(),
            [alice.userId, bob.userId].sort(),
        );
    });

    step("messages are exchanged both ways", async () => {
        for (const [from, to, body] of [
            [alice, bob, "hello bob ☎"],
            [bob, alice, "hi alice, line\nbreak and \"quotes\""],
        ]) {
            const content = { msgtype: "m.text", body };
            const seen = nextTimelineEvent(to.client, roomId, "m.room.message", (ev) => ev.getContent().body === body, `message "${body}"`);
            const sentAt = Date.now();
            const sent = await from.client.sendMessage(roomId, content);
            const ev = await seen;
            assert.equal(ev.getId(), sent.event_id);
            assert.equal(ev.getSender(), from.userId);
            assert.deepEqual(ev.getContent(), content);
            assertAge(ev, `message from ${from.userId}`, sentAt);
        }
    });

    // One 1:1 call (VoIP v1): alice calls bob, trickles candidates, bob
    // answers, alice selects bob's answer, alice hangs up.
    const callId = `call${suffix}`;
    const alicePartyId = "ALICEPARTY";
    const bobPartyId = "BOBPARTY";
    const offerSdp =
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n" +
        "a=rtpmap:111 opus/48000/2\r\na=setup:actpass\r\n";
    const answerSdp = offerSdp.replace("actpass", "active").replace("4611731400430051336", "12345");
    const callSteps = () => [
        {
            type: "m.call.invite",
            from: alice,
            to: bob,
            content: {
                call_id: callId,
                party_id: alicePartyId,
                version: "1",
                lifetime: 60000,
                invitee: bob.userId,
                offer: { type: "offer", sdp: offerSdp },
            },
        },
        {
            type: "m.call.candidates",
            from: alice,
            to: bob,
            content: {
                call_id: callId,
                party_id: alicePartyId,
                version: "1",
                candidates: [
                    { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 },
                    { candidate: "", sdpMid: "0", sdpMLineIndex: 0 }, // end of candidates
                ],
            },
        },
        {
            type: "m.call.candidates",
            from: bob,
            to: alice,
            content: {
                call_id: callId,
                party_id: bobPartyId,
                version: "1",
                candidates: [
                    { candidate: "candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host", sdpMid: "0", sdpMLineIndex: 0 },
                ],
            },
        },
        {
            type: "m.call.answer",
            from: bob,
            to: alice,
            content: {
                call_id: callId,
                party_id: bobPartyId,
                version: "1",
                answer: { type: "answer", sdp: answerSdp },
            },
        },
        {
            type: "m.call.select_answer",
            from: alice,
            to: bob,
            content: { call_id: callId, party_id: alicePartyId, version: "1", selected_party_id: bobPartyId },
        },
        {
            type: "m.call.hangup",
            from: alice,
            to: bob,
            content: { call_id: callId, party_id: alicePartyId, version: "1", reason: "user_hangup" },
        },
    ];
    const callEventIds = new Map(); // event_id -> { type, content, from, txnId }

    step("the full 1:1 call sequence arrives intact, with unsigned.age", async () => {
        let i = 0;
        for (const s of callSteps()) {
            i++;
            const txnId = `calltxn${i}${suffix}`;
            const seen = nextTimelineEvent(
                s.to.client,
                roomId,
                s.type,
                (ev) => ev.getContent().call_id === callId && ev.getContent().party_id === s.content.party_id,
                `${s.type} #${i} from ${s.from.userId} on ${s.to.userId}'s /sync`,
            );
            const sentAt = Date.now();
            const sent = await s.from.client.sendEvent(roomId, s.type, structuredClone(s.content), txnId);
            const ev = await seen;
            assert.equal(ev.getId(), sent.event_id, `${s.type} #${i}: event_id`);
            assert.equal(ev.getType(), s.type);
            assert.equal(ev.getSender(), s.from.userId);
            assert.equal(ev.getRoomId(), roomId);
            assert.deepEqual(ev.getContent(), s.content, `${s.type} #${i}: content changed in transit`);
            assertAge(ev, `${s.type} #${i}`, sentAt);
            // transaction_id is only for the device that sent the event.
            assert.equal(ev.event.unsigned?.transaction_id, undefined, `${s.type} #${i}: receiver got the sender's transaction_id`);
            callEventIds.set(sent.event_id, { type: s.type, content: s.content, from: s.from, txnId });
        }
        assert.equal(callEventIds.size, 6);
    });

    step("a raw /sync of each side has every call event with unsigned.age", async () => {
        assert.equal(callEventIds.size, 6, "the call sequence was not sent");
        const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 50 } } }));
        for (const who of [alice, bob]) {
            const res = await api("GET", `/_matrix/client/v3/sync?filter=${filter}&timeout=0`, { token: who.token });
            assert.equal(res.status, 200, res.text);
            const timeline = res.body.rooms?.join?.[roomId]?.timeline?.events ?? [];
            for (const [eventId, want] of callEventIds) {
                const got = timeline.find((e) => e.event_id === eventId);
                assert.ok(got, `${who.userId}'s /sync timeline lacks ${want.type} ${eventId}`);
                assert.equal(got.type, want.type);
                assert.equal(got.sender, want.from.userId);
                assert.deepEqual(got.content, want.content);
                const age = got.unsigned?.age;
                assert.ok(Number.isInteger(age) && age >= 0, `${want.type} in ${who.userId}'s /sync: unsigned.age ${age}`);
                if (want.from === who) {
                    assert.equal(got.unsigned?.transaction_id, want.txnId, `${want.type}: sender's own /sync must echo transaction_id`);
                } else {
                    assert.equal(got.unsigned?.transaction_id, undefined, `${want.type}: ${who.userId} got the sender's transaction_id`);
                }
            }
        }
    });

    step("to-device messages reach the other device through /sync", async () => {
        for (const [from, to] of [
            [alice, bob],
            [bob, alice],
        ]) {
            const content = { call_id: callId, note: `from ${from.userId}`, n: 42, nested: { ok: true, list: [1, "two"] } };
            const seen = nextEmit(
                to.client,
                sdk.ClientEvent.ToDeviceEvent,
                (ev) => ev.getType() === "org.switchboard.test" && ev.getContent().note === content.note,
                `to-device from ${from.userId} on ${to.userId}'s /sync`,
            );
            await from.client.sendToDevice(
                "org.switchboard.test",
                new Map([[to.userId, new Map([[to.deviceId, content]])]]),
            );
            const [ev] = await seen;
            assert.equal(ev.getSender(), from.userId);
            assert.deepEqual(ev.getContent(), content);
        }
    });

    step("typing notifications reach the other side through /sync", async () => {
        const typingOn = nextEmit(
            bob.client,
            sdk.RoomMemberEvent.Typing,
            (ev, member) => member.roomId === roomId && member.userId === alice.userId && member.typing === true,
            "alice typing on bob's /sync",
        );
        await alice.client.sendTyping(roomId, true, 30000);
        const [ev] = await typingOn;
        assert.equal(ev.getType(), "m.typing");
        assert.ok(ev.getContent().user_ids.includes(alice.userId));

        const typingOff = nextEmit(
            bob.client,
            sdk.RoomMemberEvent.Typing,
            (e, member) => member.roomId === roomId && member.userId === alice.userId && member.typing === false,
            "alice stopped typing on bob's /sync",
        );
        await alice.client.sendTyping(roomId, false, 0);
        await typingOff;
    });

    // Bad input: the server must reject it with the spec's error codes
    // (client-server API "Standard error response" and "API standards").
    step("malformed JSON body is 400 M_NOT_JSON", async () => {
        const res = await api("PUT", sendPath(roomId, "m.room.message", `badjson${suffix}`), {
            token: alice.token,
            rawBody: '{"msgtype": "m.text", "body": ',
        });
        assert.equal(res.status, 400, res.text);
        assert.equal(res.body?.errcode, "M_NOT_JSON", res.text);
    });

    step("a float in event content is 400 M_BAD_JSON", async () => {
        const res = await api("PUT", sendPath(roomId, "m.room.message", `float${suffix}`), {
            token: alice.token,
            rawBody: '{"msgtype": "m.text", "body": "pi", "value": 3.14}',
        });
        assert.equal(res.status, 400, res.text);
        assert.equal(res.body?.errcode, "M_BAD_JSON", res.text);
    });

    step("an unknown access token is 401 M_UNKNOWN_TOKEN", async () => {
        const res = await api("GET", "/_matrix/client/v3/account/whoami", { token: "syt_not_a_real_token_0000" });
        assert.equal(res.status, 401, res.text);
        assert.equal(res.body?.errcode, "M_UNKNOWN_TOKEN", res.text);
        // ... and through the SDK too.
        const stranger = sdk.createClient({
            baseUrl: h.server.baseUrl,
            userId: alice.userId,
            accessToken: "syt_not_a_real_token_0001",
            logger: recordingLogger("[stranger] "),
        });
        await assert.rejects(stranger.whoami(), (err) => err.httpStatus === 401 && err.errcode === "M_UNKNOWN_TOKEN");
    });

    step("a late joiner sees shared history, not joined-only history", async () => {
        // Client-Server API, "History visibility": with "joined" a member
        // sees events from their join on; with "shared" all of the room's
        // history once they joined.
        const carolName = `carol${suffix}`;
        await register(carolName, password);
        const carol = await loginAndStart(carolName, password, "carol");
        for (const [visibility, secretVisible] of [
            ["joined", false],
            ["shared", true],
        ]) {
            const { room_id: room } = await alice.client.createRoom({
                preset: "public_chat",
                initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: visibility } }],
            });
            const secret = `said before carol joined (${visibility})`;
            await alice.client.sendMessage(room, { msgtype: "m.text", body: secret });
            await carol.client.joinRoom(room);
            await waitForMembership(carol.client, room, "join", `carol's /sync to show her joined (${visibility})`);
            const after = `said after carol joined (${visibility})`;
            const seen = nextTimelineEvent(carol.client, room, "m.room.message", (ev) => ev.getContent().body === after, `"${after}"`);
            await alice.client.sendMessage(room, { msgtype: "m.text", body: after });
            await seen;
            // Everything the SDK can get: the synced timeline and
            // back-pagination to the start of the room.
            const r = carol.client.getRoom(room);
            for (let i = 0; i < 5 && r.getLiveTimeline().getPaginationToken(sdk.EventTimeline.BACKWARDS); i++) {
                await carol.client.scrollback(r, 50);
            }
            const bodies = r.getLiveTimeline().getEvents().filter((ev) => ev.getType() === "m.room.message").map((ev) => ev.getContent().body);
            assert.ok(bodies.includes(after), `carol's timeline lacks "${after}": ${safeJSON(bodies)}`);
            assert.equal(bodies.includes(secret), secretVisible, `history_visibility ${visibility}: carol's timeline ${safeJSON(bodies)}`);
        }
        carol.client.stopClient();
    });

    step("the server is still running", async () => {
        assert.ok(h.server.running(), "switchboard exited during the test");
        const res = await api("GET", "/_matrix/client/versions");
        assert.equal(res.status, 200);
        assert.ok(Array.isArray(res.body?.versions));
    });

    step("SIGTERM stops the server with exit code 0", async () => {
        for (const c of clients) c.stopClient();
        const { code, signal, killed } = await h.server.stop();
        assert.equal(killed, false, "switchboard did not exit within the grace period after SIGTERM and was killed");
        assert.equal(signal, null);
        assert.equal(code, 0, `switchboard exit code ${code}`);
    });
});

function sendPath(room, type, txnId) {
    return `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/${encodeURIComponent(type)}/${encodeURIComponent(txnId)}`;
}

/** Waits until client's /sync has put its user in roomId with membership. */
async function waitForMembership(client, room, membership, what) {
    if (client.getRoom(room)?.getMyMembership() === membership) return;
    await nextEmit(
        client,
        sdk.RoomMemberEvent.Membership,
        (ev, member) => member.roomId === room && member.userId === client.getUserId() && member.membership === membership,
        what,
    ).catch((err) => {
        // It may have landed between the check and the listener.
        if (client.getRoom(room)?.getMyMembership() === membership) return;
        throw err;
    });
}
