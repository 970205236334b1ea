// The test page's script: matrix-js-sdk's real calling stack (MatrixCall,
// CallEventHandler) in the browser, driven step by step from Playwright
// through window.sb. Every function returns plain JSON so that
// page.evaluate can carry it back; long waits stay in the test (it polls
// sb.info() and sb.stats() with deadlines), never in here.
//
// 1:1 calls follow the Matrix client-server spec, "Voice over IP"
// (m.call.invite, m.call.candidates, m.call.answer, m.call.hangup), with
// TURN credentials from GET /_matrix/client/v3/voip/turnServer.

import * as sdk from "matrix-js-sdk";
// Not exported from the package root in matrix-js-sdk 43.0.0.
import { CallErrorCode, CallState } from "matrix-js-sdk/lib/webrtc/call.js";
import { CallEventHandlerEvent } from "matrix-js-sdk/lib/webrtc/callEventHandler.js";

/** What the page has seen, read by the test through sb.info(). */
const seen = {
    userId: undefined,
    syncState: undefined,
    turnServers: [],
    turnError: undefined,
    callId: undefined,
    states: [],
    hangup: undefined,
    errors: [],
    incoming: 0,
};

let client;
let call;

function setStatus() {
    document.getElementById("who").textContent = `${seen.userId ?? "?"}: ${call?.state ?? "no call"}`;
    const states = seen.states.filter((st, i) => st !== seen.states[i - 1]);
    document.getElementById("status").textContent = [
        `states: ${states.join(" → ")}`,
        `hangup: ${JSON.stringify(seen.hangup ?? null)}`,
        `TURN: ${seen.turnServers.flatMap((s) => s.urls).join(" ")}`,
    ].join("\n");
}

/** Shows the call's local and remote camera streams in the two videos. */
function showFeeds() {
    const local = document.getElementById("local");
    const remote = document.getElementById("remote");
    const ls = call?.localUsermediaStream ?? null;
    const rs = call?.remoteUsermediaStream ?? null;
    if (local.srcObject !== ls) local.srcObject = ls;
    if (remote.srcObject !== rs) remote.srcObject = rs;
}

/** Follows one call: its states, feeds, errors and hangup. */
function track(c) {
    call = c;
    seen.callId = c.callId;
    seen.states.push(c.state);
    c.on(sdk.CallEvent.State, (state) => {
        seen.states.push(state);
        setStatus();
    });
    c.on(sdk.CallEvent.FeedsChanged, showFeeds);
    c.on(sdk.CallEvent.Error, (err) => {
        seen.errors.push(`${err.code}: ${err.message}`);
    });
    c.on(sdk.CallEvent.Hangup, () => {
        seen.hangup = { party: c.hangupParty, reason: c.hangupReason };
        setStatus();
    });
    setStatus();
}

/**
 * Registers username (open registration, m.login.dummy), starts a client
 * with forceTURN and no fallback ICE server, and resolves once the first
 * sync is done. The TURN servers arrive asynchronously (the test polls
 * sb.info().turnServers).
 */
async function start({ baseUrl, username, password, forceTURN }) {
    const anon = sdk.createClient({ baseUrl });
    const reg = await anon.registerRequest({ username, password, auth: { type: "m.login.dummy" } });
    client = sdk.createClient({
        baseUrl,
        userId: reg.user_id,
        accessToken: reg.access_token,
        deviceId: reg.device_id,
        forceTURN,
        // Never fall back to a public STUN server: traffic stays on loopback.
        fallbackICEServerAllowed: false,
    });
    seen.userId = reg.user_id;
    client.on(sdk.ClientEvent.TurnServers, (servers) => {
        seen.turnServers = servers.map((s) => ({ urls: s.urls, username: s.username }));
        setStatus();
    });
    client.on(sdk.ClientEvent.TurnServersError, (err) => {
        seen.turnError = String(err);
    });
    client.on(CallEventHandlerEvent.Incoming, (c) => {
        seen.incoming++;
        track(c);
    });
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state) => {
            seen.syncState = state;
            if (state === "PREPARED") {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                client.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error(`first /sync failed: ${client.getSyncStateData()?.error}`));
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 10 });
    await prepared;
    setStatus();
    return { userId: reg.user_id, deviceId: reg.device_id, supportsVoip: client.supportsVoip() };
}

/** Creates a direct-message room inviting otherUserId; returns its id. */
async function createDirectRoom(otherUserId) {
    const res = await client.createRoom({
        preset: "trusted_private_chat",
        is_direct: true,
        invite: [otherUserId],
        name: "switchboard browser call test",
    });
    return res.room_id;
}

/** This user's membership in roomId as the client sees it (or null). */
function membership(roomId, userId) {
    const room = client.getRoom(roomId);
    if (!room) return null;
    return room.getMember(userId ?? client.getUserId())?.membership ?? null;
}

async function join(roomId) {
    await client.joinRoom(roomId);
}

/** Places a video call in roomId (resolves once the invite is sent). */
async function placeVideoCall(roomId) {
    const c = client.createCall(roomId);
    if (!c) throw new Error("createCall returned null: this browser does not support WebRTC calls");
    track(c);
    await c.placeVideoCall();
    return { callId: c.callId };
}

/** Answers the incoming call with audio and video. */
async function answer() {
    if (!call) throw new Error("no incoming call to answer");
    await call.answer(true, true);
}

/** Hangs the call up as the user would. */
function hangup() {
    call.hangup(CallErrorCode.UserHangup, false);
}

/** A snapshot of what the page has seen so far. */
function info() {
    return {
        ...seen,
        state: call?.state ?? null,
        iceConnectionState: call?.peerConn?.iceConnectionState ?? null,
        connectionState: call?.peerConn?.connectionState ?? null,
    };
}

/**
 * The facts of the call's RTCPeerConnection stats the test checks
 * (W3C webrtc-stats): video framesDecoded of inbound-rtp, frames sent, and
 * the selected candidate pair (RTCTransportStats.selectedCandidatePairId,
 * else the nominated succeeded pair) with its local and remote candidates.
 */
async function stats() {
    const pc = call?.peerConn;
    if (!pc) return null;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let framesDecoded = 0;
    let framesSent = 0;
    let pairId;
    const pairs = [];
    for (const s of byId.values()) {
        if (s.type === "inbound-rtp" && s.kind === "video") framesDecoded += s.framesDecoded ?? 0;
        if (s.type === "outbound-rtp" && s.kind === "video") framesSent += s.framesSent ?? 0;
        if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
        if (s.type === "candidate-pair") pairs.push(s);
    }
    let pair = pairId ? byId.get(pairId) : undefined;
    pair ??= pairs.find((p) => p.state === "succeeded" && p.nominated);
    const cand = (id) => {
        const c = byId.get(id);
        if (!c) return null;
        return {
            candidateType: c.candidateType,
            protocol: c.protocol,
            relayProtocol: c.relayProtocol ?? null,
            address: c.address,
            port: c.port,
            url: c.url ?? null,
        };
    };
    return {
        framesDecoded,
        framesSent,
        selectedPair: pair
            ? {
                  state: pair.state,
                  nominated: pair.nominated,
                  bytesSent: pair.bytesSent,
                  bytesReceived: pair.bytesReceived,
                  local: cand(pair.localCandidateId),
                  remote: cand(pair.remoteCandidateId),
              }
            : null,
        pairStates: pairs.map((p) => p.state),
        localCandidates: [...byId.values()]
            .filter((s) => s.type === "local-candidate")
            .map((s) => `${s.candidateType} ${s.protocol} ${s.address}:${s.port} ${s.relayProtocol ?? ""}`),
    };
}

window.sb = {
    start,
    createDirectRoom,
    membership,
    join,
    placeVideoCall,
    answer,
    hangup,
    info,
    stats,
    CallState: { ...CallState },
};
window.sbReady = true;
