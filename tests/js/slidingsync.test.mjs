// matrix-js-sdk's own sliding sync client (MSC4186, the endpoint Element X
// and Element Web's new sync mode speak) against Switchboard: bob's client
// runs on SlidingSync only (no /sync) and must see his room list, an
// invite, new messages, a call invite, unread counts and a to-device
// message, each sent by alice through the plain client-server API.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { SlidingSync } from "matrix-js-sdk/lib/sliding-sync.js";
import * as harness from "./harness.mjs";
import { sdkLog } from "./harness.mjs";
import { waitUntil } from "../lib/server.mjs";

const SEEN_WITHIN_MS = 20000;

const h = harness.useSwitchboard();

/** Registers username (m.login.dummy) and returns a client, not started. */
async function registered(username) {
    const res = await harness.register(h.server, username, "password");
    return harness.sessionClient(h.server, h.clients, res, username);
}

/** harness.nextEmit, waiting SEEN_WITHIN_MS. */
function nextEmit(emitter, event, match, what) {
    return harness.nextEmit(emitter, event, match, what, SEEN_WITHIN_MS);
}

/** harness.nextTimelineEvent for any event of type, waiting SEEN_WITHIN_MS. */
function nextTimelineEvent(client, roomId, type, what) {
    return harness.nextTimelineEvent(client, roomId, type, () => true, what, SEEN_WITHIN_MS);
}

describe("matrix-js-sdk sliding sync against switchboard", () => {
    it("follows rooms, invites, messages, calls and to-device messages", async (t) => {
        try {
            const versions = await fetch(`${h.server.baseUrl}/_matrix/client/versions`).then((r) => r.json());
            assert.equal(versions.unstable_features?.["org.matrix.simplified_msc3575"], true);

            const alice = await registered("alice");
            const bob = await registered("bob");
            // A room bob is already in before his client starts.
            const { room_id: first } = await alice.createRoom({ name: "before", invite: [bob.getUserId()] });
            await bob.joinRoom(first);
            await alice.sendTextMessage(first, "already there");

            const config = { timeline_limit: 10, required_state: [["*", "*"]] };
            const lists = new Map([["all", { ranges: [[0, 19]], ...config }]]);
            const ss = new SlidingSync(h.server.baseUrl, lists, config, bob, 5000);
            const prepared = nextEmit(bob, sdk.ClientEvent.Sync, (state) => state === "PREPARED", "bob's first sliding sync");
            await bob.startClient({ slidingSync: ss });
            await prepared;
            await waitUntil("the first room in bob's list", SEEN_WITHIN_MS, () => bob.getRoom(first)?.name === "before");
            assert.equal(ss.getListData("all")?.joinedCount, 1);

            // An invite arrives, bob joins, messages and a call follow.
            const invited = nextEmit(
                bob,
                sdk.RoomEvent.MyMembership,
                (room, membership) => membership === "invite",
                "bob's invite",
            );
            const { room_id: second } = await alice.createRoom({ name: "call me", invite: [bob.getUserId()], is_direct: true });
            await invited;
            await bob.joinRoom(second);
            await waitUntil("the list count after joining", SEEN_WITHIN_MS, () => ss.getListData("all")?.joinedCount === 2);

            const msg = nextTimelineEvent(bob, second, "m.room.message", "alice's message");
            await alice.sendTextMessage(second, "hello over sliding sync");
            assert.equal((await msg).getContent().body, "hello over sliding sync");
            await waitUntil("an unread count", SEEN_WITHIN_MS, () => bob.getRoom(second)?.getUnreadNotificationCount() >= 1);

            const call = nextTimelineEvent(bob, second, "m.call.invite", "alice's call invite");
            await alice.sendEvent(second, "m.call.invite", {
                call_id: "js-call",
                party_id: "alice",
                version: "1",
                lifetime: 60000,
                offer: { type: "offer", sdp: "v=0\r\n" },
            });
            assert.equal((await call).getContent().call_id, "js-call");

            const toDevice = nextEmit(
                bob,
                sdk.ClientEvent.ToDeviceEvent,
                (ev) => ev.getType() === "org.example.ping",
                "a to-device message",
            );
            await alice.sendToDevice("org.example.ping", new Map([[bob.getUserId(), new Map([[bob.getDeviceId(), { n: 1 }]])]]));
            const [td] = await toDevice;
            assert.equal(td.getContent().n, 1);
            assert.equal(td.getSender(), alice.getUserId());
        } catch (err) {
            process.stderr.write(`\n--- switchboard stderr ---\n${h.server.stderr()}\n--- sdk log ---\n${sdkLog.join("\n")}\n`);
            throw err;
        }
    });
});
