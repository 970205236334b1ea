// Group calls through the server's SFU focus: MSC3401 room state (the
// call, org.matrix.msc3401.call, and each participant's
// org.matrix.msc3401.call.member), MSC3898 to-device signalling with the
// focus's service device (m.call.invite, m.call.answer, m.call.candidates,
// m.call.negotiate, m.call.hangup), then MSC3898 data-channel messages
// (m.call.track_subscription, m.call.negotiate,
// m.call.sdp_stream_metadata_changed, m.call.ping/pong) and Switchboard's
// active speaker message (chat.switchboard.call.speakers).

import { serverName } from "./matrix.js";
import { ourPartyId, summarizeStats } from "./call.js";
import { explainMediaError, getMedia } from "./media.js";

export const CALL_TYPES = ["org.matrix.msc3401.call", "m.call"];
export const MEMBER_TYPES = ["org.matrix.msc3401.call.member", "m.call.member"];
const SPEAKERS = "chat.switchboard.call.speakers";

/** How long a published call membership lives; it is renewed well before. */
const MEMBER_TTL_MS = 15 * 60 * 1000;
const MEMBER_RENEW_MS = 5 * 60 * 1000;
/** After this long disconnected, restart ICE; after RESTART_MS more, join afresh. */
const DISCONNECT_GRACE_MS = 2500;
const RESTART_MS = 10000;

function randomId() {
    const a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return [...a].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The room's current group call (newest m.call not terminated), or null. */
export function activeCall(room) {
    let best = null;
    for (const type of CALL_TYPES) {
        for (const ev of room.stateOfType(type)) {
            const c = ev.content ?? {};
            if (Object.keys(c).length === 0 || c["m.terminated"]) continue;
            if (!best || (ev.origin_server_ts ?? 0) > (best.event.origin_server_ts ?? 0)) best = { confId: ev.state_key, type, content: c, event: ev };
        }
    }
    return best;
}

/** The devices in the room's active call with a live membership. */
export function callMembers(room) {
    const call = activeCall(room);
    if (!call) return [];
    const now = Date.now();
    const out = [];
    for (const type of MEMBER_TYPES) {
        for (const ev of room.stateOfType(type)) {
            if (room.stateEvent("m.room.member", ev.state_key)?.content?.membership !== "join") continue;
            const c = ev.content ?? {};
            for (const cl of Array.isArray(c["m.calls"]) ? c["m.calls"] : []) {
                if (cl["m.call_id"] !== call.confId) continue;
                for (const d of Array.isArray(cl["m.devices"]) ? cl["m.devices"] : []) {
                    const exp = d.expires_ts ?? c["m.expires_ts"];
                    if (typeof exp === "number" && exp > now) out.push({ userId: ev.state_key, deviceId: d.device_id, sessionId: d.session_id });
                }
            }
        }
    }
    return out;
}

/**
 * One device's part in a group call. Events: "ended" (detail: a message
 * for the person, or "").
 */
export class GroupCall extends EventTarget {
    constructor(client, room, settings, view) {
        super();
        this.client = client;
        this.room = room;
        this.roomId = room.id;
        this.settings = settings;
        this.view = view;
        this.sessionId = randomId();
        this.state = "idle";
        this.micMuted = false;
        this.camMuted = false;
        this.remoteMeta = {};
        this.remoteStreams = new Map(); // stream ID → MediaStream
        this.trackStream = new Map(); // remote track ID → stream ID
        this.subscribed = new Map(); // track ID → "WxH" asked for
        this.speakers = { active: [], dominant: null };
        this.negQueue = Promise.resolve();
        this.pendingRemote = [];
        this.pendingLocal = [];
        this.restartTimer = undefined;
        this.rejoinTimer = undefined;
        this.reconnecting = false;
        this.rejoins = 0;
        this.iceRestarts = 0;
        this.reconnects = 0;
        this.noticeUntil = 0;
        this.ended = false;
    }

    // ---- joining and leaving ----

    async join() {
        this.setStatus("Opening camera and microphone…");
        try {
            this.localStream = await getMedia({ audio: true, video: true, settings: this.settings });
        } catch (err) {
            this.end(explainMediaError(err), false);
            return;
        }
        this.showLocal();
        this.setStatus("Joining…");
        try {
            let call = activeCall(this.room);
            const ownFocus = { user_id: `@switchboard:${serverName(this.client.userId)}`, device_id: "SFU" };
            if (!call) {
                const confId = `conf-${randomId()}`;
                const content = { "m.intent": "m.room", "m.type": "m.video", "m.name": this.room.displayName(this.client.userId), "m.foci": [ownFocus] };
                await this.client.sendState(this.roomId, CALL_TYPES[0], confId, content);
                call = { confId, content };
                this.room.addState({ type: CALL_TYPES[0], state_key: confId, content, origin_server_ts: Date.now() });
            }
            this.confId = call.confId;
            const foci = Array.isArray(call.content["m.foci"]) ? call.content["m.foci"] : [];
            this.focus = foci.find((f) => f?.user_id && f?.device_id) ?? ownFocus;
            await this.publishMember();
            this.renewTimer = setInterval(() => this.publishMember().catch(() => {}), MEMBER_RENEW_MS);
            await this.connect();
        } catch (err) {
            this.end(`Could not join the call: ${err.message}`);
        }
    }

    async publishMember() {
        if (this.ended) return;
        const content = {
            "m.calls": [
                {
                    "m.call_id": this.confId,
                    "m.devices": [
                        {
                            device_id: this.client.deviceId,
                            session_id: this.sessionId,
                            expires_ts: Date.now() + MEMBER_TTL_MS,
                            feeds: [{ purpose: "m.usermedia" }],
                            "m.foci.active": [this.focus],
                        },
                    ],
                },
            ],
        };
        await this.client.sendState(this.roomId, MEMBER_TYPES[0], this.client.userId, content);
    }

    /** Opens a PeerConnection to the focus and sends it m.call.invite. */
    async connect() {
        if (this.ended) return;
        this.callId = `g${randomId()}`;
        this.seq = 0;
        this.focusSession = "";
        this.pendingRemote = [];
        this.pendingLocal = [];
        this.inviteSent = false;
        this.subscribed.clear();
        let iceServers = [];
        try {
            iceServers = await this.client.iceServers();
        } catch (err) {
            console.warn("no TURN servers", err);
        }
        const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: this.settings.relayOnly && iceServers.length ? "relay" : "all" });
        this.pc = pc;
        const dc = pc.createDataChannel("signalling");
        // The focus sends binary messages (pion's Send); read them as bytes, not Blobs.
        dc.binaryType = "arraybuffer";
        this.dc = dc;
        dc.addEventListener("message", (e) => this.onData(e.data));
        dc.addEventListener("open", () => {
            // The focus sends the current metadata once it hears from us.
            this.sendData("m.call.ping", {});
            this.syncSubscriptions();
        });
        const audio = this.localStream.getAudioTracks()[0];
        const video = this.screenTrack ?? this.localStream.getVideoTracks()[0];
        if (audio) pc.addTransceiver(audio, { direction: "sendonly", streams: [this.localStream] });
        if (video) {
            // Simulcast (RFC 8853): the SFU picks a layer per subscriber.
            this.videoTransceiver = pc.addTransceiver(video, {
                direction: "sendonly",
                streams: [this.localStream],
                sendEncodings: [
                    { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
                    { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
                    { rid: "f", maxBitrate: 1_500_000 },
                ],
            });
            this.videoSender = this.videoTransceiver.sender;
        }
        pc.addEventListener("icecandidate", (e) => {
            if (pc !== this.pc) return;
            this.pendingLocal.push(e.candidate ? e.candidate.toJSON() : { candidate: "" });
            if (this.inviteSent) this.flushLocalCandidates();
        });
        pc.addEventListener("track", (e) => this.onTrack(e));
        pc.addEventListener("iceconnectionstatechange", () => this.onIceState(pc));
        await pc.setLocalDescription(await pc.createOffer());
        // Let the first candidates land in the offer (fewer round trips).
        await new Promise((resolve) => {
            if (pc.iceGatheringState === "complete") return resolve();
            const t = setTimeout(resolve, 1500);
            pc.addEventListener("icegatheringstatechange", () => {
                if (pc.iceGatheringState === "complete") {
                    clearTimeout(t);
                    resolve();
                }
            });
        });
        if (pc !== this.pc || this.ended) return;
        this.pendingLocal = [];
        this.state = "connecting";
        this.setStatus(this.reconnecting ? "Rejoining the call…" : "Connecting to the call server…", this.reconnecting);
        await this.sendToFocus("m.call.invite", {
            lifetime: 30000,
            offer: { type: "offer", sdp: pc.localDescription.sdp },
            sdp_stream_metadata: this.metadata(),
        });
        this.inviteSent = true;
        this.flushLocalCandidates();
    }

    /** Leaves the call: hangup to the focus, membership emptied. */
    leave() {
        if (this.ended) return;
        if (this.callId && this.inviteSent) this.sendToFocus("m.call.hangup", { reason: "user_hangup" }).catch(() => {});
        this.end("", true);
    }

    end(message, sendLeave = true) {
        if (this.ended) return;
        this.ended = true;
        clearInterval(this.renewTimer);
        clearTimeout(this.restartTimer);
        clearTimeout(this.rejoinTimer);
        this.pc?.close();
        for (const t of this.localStream?.getTracks() ?? []) t.stop();
        this.screenTrack?.stop();
        if (sendLeave && this.confId) this.client.sendState(this.roomId, MEMBER_TYPES[0], this.client.userId, { "m.calls": [] }).catch(() => {});
        this.state = "ended";
        this.dispatchEvent(new CustomEvent("ended", { detail: message }));
    }

    // ---- signalling ----

    fields() {
        return {
            version: "1",
            call_id: this.callId,
            party_id: ourPartyId,
            conf_id: this.confId,
            room_id: this.roomId,
            device_id: this.client.deviceId,
            sender_session_id: this.sessionId,
            dest_session_id: this.focusSession,
            seq: this.seq++,
        };
    }

    sendToFocus(type, content) {
        const body = { ...this.fields(), ...content };
        return this.client.sendToDevice(type, { [this.focus.user_id]: { [this.focus.device_id]: body } });
    }

    sendData(type, content) {
        if (this.dc?.readyState !== "open") return false;
        try {
            this.dc.send(JSON.stringify({ type, content }));
            return true;
        } catch {
            return false;
        }
    }

    flushLocalCandidates() {
        const list = this.pendingLocal.splice(0);
        if (list.length === 0) return;
        this.sendToFocus("m.call.candidates", { candidates: list }).catch((err) => console.warn("candidates", err));
    }

    metadata() {
        const s = this.localStream;
        if (!s) return {};
        return { [s.id]: { purpose: "m.usermedia", audio_muted: this.micMuted, video_muted: this.camMuted && !this.screenTrack } };
    }

    /** To-device messages from /sync; only the focus's for this call count. */
    onToDevice(ev) {
        if (this.ended || !this.focus || ev.sender !== this.focus.user_id) return;
        const c = ev.content ?? {};
        if (c.call_id !== this.callId) return;
        if (c.dest_session_id && c.dest_session_id !== this.sessionId) return;
        this.negQueue = this.negQueue.then(() => this.onFocusMessage(ev.type, c)).catch((err) => console.warn(`focus ${ev.type}`, err));
    }

    async onFocusMessage(type, c) {
        console.debug(`group: to-device ${type}${c.description ? ` (${c.description.type})` : ""}`);
        const pc = this.pc;
        if (!pc || this.ended) return;
        switch (type) {
            case "m.call.answer":
                if (pc.signalingState !== "have-local-offer") return;
                this.focusSession = c.sender_session_id ?? "";
                await pc.setRemoteDescription(c.answer);
                await this.addRemoteCandidates();
                return;
            case "m.call.candidates":
                this.pendingRemote.push(...(c.candidates ?? []));
                await this.addRemoteCandidates();
                return;
            case "m.call.negotiate":
                if (c.sdp_stream_metadata) this.setRemoteMeta(c.sdp_stream_metadata);
                await this.applyDescription(c.description, false);
                return;
            case "m.call.sdp_stream_metadata_changed":
                if (c.sdp_stream_metadata) this.setRemoteMeta(c.sdp_stream_metadata);
                return;
            case "m.call.hangup":
                this.onFocusHangup(c.reason);
                return;
        }
    }

    onFocusHangup(reason) {
        if (reason === "ice_failed" || reason === "ice_timeout") {
            this.rejoin("The call server lost our connection");
            return;
        }
        const words = {
            user_not_joined: "The call server did not let you in: your call membership was not accepted. Try joining again.",
            user_busy: "The call is full or the server is busy. Try again in a moment.",
            unknown_error: "The call server could not handle this call.",
            user_hangup: "The call server ended the call.",
        };
        this.end(words[reason] ?? `The call ended (${reason}).`);
    }

    async addRemoteCandidates() {
        const pc = this.pc;
        if (!pc?.remoteDescription) return;
        for (const cand of this.pendingRemote.splice(0)) {
            if (!cand?.candidate) continue;
            try {
                await pc.addIceCandidate(cand);
            } catch (err) {
                console.warn("focus candidate refused", err);
            }
        }
    }

    /** Applies a description from the focus; offers are answered on the same transport. */
    async applyDescription(desc, viaDC) {
        const pc = this.pc;
        if (!desc || !pc) return;
        if (desc.type === "answer") {
            if (pc.signalingState === "have-local-offer") await pc.setRemoteDescription(desc);
            const s = pc.iceConnectionState;
            if (this.reconnecting && (s === "connected" || s === "completed")) this.markConnected();
            return;
        }
        // The focus is the impolite peer: its offer wins over ours (implicit rollback).
        await pc.setRemoteDescription(desc);
        await this.addRemoteCandidates();
        await pc.setLocalDescription();
        const body = { description: { type: "answer", sdp: pc.localDescription.sdp }, sdp_stream_metadata: this.metadata() };
        if (viaDC && this.sendData("m.call.negotiate", body)) return;
        await this.sendToFocus("m.call.negotiate", body);
    }

    onData(raw) {
        let m;
        try {
            m = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
        } catch {
            return;
        }
        const c = m?.content ?? {};
        if (m?.type !== "m.call.ping") console.debug(`group: data channel ${m?.type}${c.description ? ` (${c.description.type})` : ""}`);
        switch (m?.type) {
            case "m.call.ping":
                this.sendData("m.call.pong", {});
                return;
            case "m.call.negotiate":
                if (c.sdp_stream_metadata) this.setRemoteMeta(c.sdp_stream_metadata);
                this.negQueue = this.negQueue.then(() => this.applyDescription(c.description, true)).catch((err) => console.warn("negotiate", err));
                return;
            case "m.call.sdp_stream_metadata_changed":
                if (c.sdp_stream_metadata) this.setRemoteMeta(c.sdp_stream_metadata);
                return;
            case SPEAKERS:
                this.speakers = { active: c.active ?? [], dominant: c.dominant ?? null };
                this.render();
                return;
        }
    }

    // ---- media and tiles ----

    onTrack(e) {
        const stream = e.streams[0];
        if (!stream) return;
        this.remoteStreams.set(stream.id, stream);
        this.trackStream.set(e.track.id, stream.id);
        this.render();
    }

    setRemoteMeta(meta) {
        this.remoteMeta = meta;
        this.render();
        this.syncSubscriptions();
    }

    isMe(userId, deviceId) {
        return userId === this.client.userId && deviceId === this.client.deviceId;
    }

    /** Remote streams to show: one tile per published stream of someone else. */
    remoteStreamsMeta() {
        return Object.entries(this.remoteMeta).filter(([, s]) => s && !this.isMe(s.user_id, s.device_id));
    }

    /** Asks the focus for the tracks in the metadata, sized to the tiles. */
    syncSubscriptions() {
        if (this.dc?.readyState !== "open") return;
        const streams = this.remoteStreamsMeta();
        const n = streams.length;
        // Per-tile size: big when few tiles, smaller in a crowded grid.
        const [w, h] = n <= 1 ? [1280, 720] : n <= 4 ? [640, 360] : [320, 180];
        const subscribe = [];
        const want = new Set();
        for (const [streamId, s] of streams) {
            for (const [trackId, t] of Object.entries(s.tracks ?? {})) {
                want.add(trackId);
                const size = t.kind === "video" ? `${w}x${h}` : "audio";
                if (this.subscribed.get(trackId) === size) continue;
                this.subscribed.set(trackId, size);
                subscribe.push(t.kind === "video" ? { stream_id: streamId, track_id: trackId, width: w, height: h } : { stream_id: streamId, track_id: trackId });
            }
        }
        const unsubscribe = [];
        for (const id of [...this.subscribed.keys()]) {
            if (!want.has(id)) {
                this.subscribed.delete(id);
                unsubscribe.push({ track_id: id });
            }
        }
        if (subscribe.length || unsubscribe.length) this.sendData("m.call.track_subscription", { subscribe, unsubscribe });
    }

    showLocal() {
        const t = this.view.tile("local", { name: "You", local: true });
        t.setStream(this.localStream);
        t.setMuted({ audio: this.micMuted, video: this.camMuted && !this.screenTrack });
    }

    render() {
        if (this.ended) return;
        const seen = new Set(["local"]);
        const d = this.speakers.dominant;
        for (const [streamId, s] of this.remoteStreamsMeta()) {
            seen.add(streamId);
            const name = this.room.memberName(s.user_id);
            const tile = this.view.tile(streamId, { name });
            const stream = this.remoteStreams.get(streamId);
            if (stream) tile.setStream(stream);
            tile.setMuted({ audio: !!s.audio_muted, video: !!s.video_muted || !stream });
            tile.setSpeaking(!!d && d.user_id === s.user_id && d.device_id === s.device_id);
            tile.setScreen(s.purpose === "m.screenshare");
        }
        for (const key of [...this.view.tiles.keys()]) if (!seen.has(key)) this.view.removeTile(key);
        const local = this.view.tiles.get("local");
        local?.setSpeaking(!!d && this.isMe(d.user_id, d.device_id));
        if (this.state === "connected") {
            const n = this.remoteStreamsMeta().length;
            const who = n === 0 ? "waiting for others to join…" : `${n + 1} in the call`;
            // "Reconnected" stays up a few seconds before the usual status.
            this.setStatus(`${Date.now() < this.noticeUntil ? "Reconnected" : "Connected"} · ${who}`);
        }
    }

    onRoomState() {
        this.render();
    }

    setStatus(text, bad = false) {
        this.view.setStatus(text, bad);
    }

    toggleMic() {
        this.micMuted = !this.micMuted;
        for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !this.micMuted;
        this.sendMeta();
        this.showLocal();
        return this.micMuted;
    }

    toggleCam() {
        this.camMuted = !this.camMuted;
        for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = !this.camMuted;
        this.sendMeta();
        this.showLocal();
        return this.camMuted;
    }

    sendMeta() {
        const body = { sdp_stream_metadata: this.metadata() };
        if (!this.sendData("m.call.sdp_stream_metadata_changed", body) && this.inviteSent) {
            this.sendToFocus("m.call.sdp_stream_metadata_changed", body).catch(() => {});
        }
    }

    /** Re-opens the camera and microphone picked in the settings. */
    async switchDevices() {
        if (this.ended || !this.localStream) return;
        const fresh = await getMedia({ audio: true, video: true, settings: this.settings });
        const senders = this.pc?.getSenders() ?? [];
        for (const kind of ["audio", "video"]) {
            const nt = kind === "audio" ? fresh.getAudioTracks()[0] : fresh.getVideoTracks()[0];
            const old = kind === "audio" ? this.localStream.getAudioTracks()[0] : this.localStream.getVideoTracks()[0];
            if (!nt) continue;
            nt.enabled = kind === "audio" ? !this.micMuted : !this.camMuted;
            const sender = senders.find((s) => s.track === old) ?? (kind === "video" ? this.videoSender : undefined);
            if (!(kind === "video" && this.screenTrack)) await sender?.replaceTrack(nt);
            if (old) {
                this.localStream.removeTrack(old);
                old.stop();
            }
            this.localStream.addTrack(nt);
            if (kind === "video") this.cameraTrack = nt;
        }
        this.showLocal();
    }

    // ---- reconnecting ----

    onIceState(pc) {
        if (pc !== this.pc || this.ended) return;
        const s = pc.iceConnectionState;
        if (s === "connected" || s === "completed") {
            this.markConnected();
            return;
        }
        if (s === "disconnected" && !this.restartTimer && !this.rejoinTimer) {
            this.setStatus("Connection interrupted…", true);
            this.restartTimer = setTimeout(() => this.restartIce(pc), DISCONNECT_GRACE_MS);
        } else if (s === "failed" && !this.rejoinTimer) {
            clearTimeout(this.restartTimer);
            this.restartTimer = undefined;
            this.restartIce(pc);
        }
    }

    /** Media flows (again): stop the recovery timers and say so. */
    markConnected() {
        clearTimeout(this.restartTimer);
        clearTimeout(this.rejoinTimer);
        this.restartTimer = this.rejoinTimer = undefined;
        const was = this.reconnecting;
        this.reconnecting = false;
        this.state = "connected";
        this.render();
        if (was) {
            this.reconnects++;
            this.noticeUntil = Date.now() + 5000;
            this.render();
            setTimeout(() => this.render(), 5100);
        }
    }

    /** First step of recovery: an ICE restart offered to the focus. */
    async restartIce(pc, force = false) {
        this.restartTimer = undefined;
        if (pc !== this.pc || this.ended) return;
        const s = pc.iceConnectionState;
        if (!force && (s === "connected" || s === "completed")) return;
        this.reconnecting = true;
        this.state = "reconnecting";
        this.iceRestarts++;
        this.setStatus("Connection lost: reconnecting (restarting ICE)…", true);
        this.rejoinTimer = setTimeout(() => {
            const now = pc.iceConnectionState;
            // A restart on a connection that never dropped may not change
            // the ICE state at all: still connected means recovered.
            if (pc === this.pc && pc.signalingState === "stable" && (now === "connected" || now === "completed")) this.markConnected();
            else this.rejoin("ICE restart did not bring the connection back");
        }, RESTART_MS);
        this.negQueue = this.negQueue
            .then(async () => {
                if (pc !== this.pc || pc.signalingState !== "stable") return;
                await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
                const body = { description: { type: "offer", sdp: pc.localDescription.sdp }, sdp_stream_metadata: this.metadata() };
                await this.sendToFocus("m.call.negotiate", body);
            })
            .catch((err) => console.warn("ICE restart", err));
    }

    /** Second step: a fresh join (new PeerConnection, new invite). */
    async rejoin(why) {
        clearTimeout(this.rejoinTimer);
        this.rejoinTimer = undefined;
        if (this.ended) return;
        console.info(`rejoining the group call: ${why}`);
        this.reconnecting = true;
        this.state = "reconnecting";
        this.rejoins++;
        this.setStatus("Connection lost: rejoining the call…", true);
        const old = this.pc;
        this.pc = undefined;
        old?.close();
        this.remoteStreams.clear();
        this.render();
        try {
            await this.publishMember();
            await this.connect();
        } catch (err) {
            this.setStatus(`Could not rejoin: ${err.message}. Retrying…`, true);
            this.rejoinTimer = setTimeout(() => this.rejoin("retry"), 5000);
        }
    }

    /**
     * Fault injection for debugging and the browser tests: "ice-restart"
     * restarts ICE on a working connection; "drop" loses the connection
     * without telling the focus (as a dead network would) and recovers
     * the way a failed ICE restart does, with a fresh join.
     */
    injectFault(kind) {
        if (!this.pc || this.ended) return false;
        if (kind === "ice-restart") {
            this.restartIce(this.pc, true);
            return true;
        }
        if (kind === "drop") {
            const pc = this.pc;
            pc.close();
            this.reconnecting = true;
            this.rejoin("connection dropped");
            return true;
        }
        return false;
    }

    // ---- stats ----

    /** Per-tile stats summaries keyed by stream ID, from one getStats. */
    async tileStats() {
        const pc = this.pc;
        if (!pc) return {};
        const report = await pc.getStats();
        const all = summarizeStats(report);
        const per = {};
        report.forEach((s) => {
            if (s.type !== "inbound-rtp") return;
            const streamId = this.trackStream.get(s.trackIdentifier);
            if (!streamId) return;
            const p = (per[streamId] ??= { framesDecoded: 0, bytesReceived: 0, packetsReceived: 0, packetsLost: 0, rttMs: all.rttMs, frameWidth: 0, ts: 0 });
            p.bytesReceived += s.bytesReceived ?? 0;
            p.packetsReceived += s.packetsReceived ?? 0;
            p.packetsLost += Math.max(0, s.packetsLost ?? 0);
            if (s.kind === "video") {
                p.framesDecoded += s.framesDecoded ?? 0;
                p.frameWidth = Math.max(p.frameWidth, s.frameWidth ?? 0);
            }
            p.ts = Math.max(p.ts, s.timestamp);
        });
        return per;
    }

    /** The simulcast layers (RIDs) the browser is sending video on. */
    async sendLayers() {
        if (!this.pc) return [];
        const out = [];
        (await this.pc.getStats()).forEach((s) => {
            if (s.type === "outbound-rtp" && s.kind === "video" && (s.bytesSent ?? 0) > 0) out.push(s.rid ?? "");
        });
        return out.sort();
    }

    async info() {
        return {
            sendLayers: await this.sendLayers(),
            state: this.state,
            confId: this.confId,
            callId: this.callId,
            ice: this.pc?.iceConnectionState ?? null,
            signaling: this.pc?.signalingState ?? null,
            dc: this.dc?.readyState ?? null,
            rejoins: this.rejoins,
            iceRestarts: this.iceRestarts,
            reconnects: this.reconnects,
            status: document.getElementById("call-status")?.textContent ?? "",
            remote: this.remoteStreamsMeta().map(([id, s]) => ({ streamId: id, userId: s.user_id, audioMuted: !!s.audio_muted, videoMuted: !!s.video_muted, hasStream: this.remoteStreams.has(id) })),
            stats: await this.tileStats(),
            speakers: this.speakers,
        };
    }
}
