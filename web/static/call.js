// 1:1 calls: the Matrix Client-Server API's "Voice over IP" module, version
// "1" (m.call.invite with party_id and lifetime, m.call.candidates,
// m.call.answer, m.call.select_answer, m.call.negotiate,
// m.call.sdp_stream_metadata_changed (MSC3077), m.call.hangup and
// m.call.reject), over room events, with TURN servers from
// GET /voip/turnServer. It interoperates with matrix-js-sdk's MatrixCall.

import { getMedia, explainMediaError } from "./media.js";

/** How long an invite rings before it expires (spec: lifetime). */
export const INVITE_LIFETIME_MS = 60000;

function randomId(n = 16) {
    const a = new Uint8Array(n);
    crypto.getRandomValues(a);
    return [...a].map((b) => b.toString(36).padStart(2, "0")).join("").slice(0, n);
}

/** The party ID of this page (spec: party_id, one per device session). */
export const ourPartyId = randomId(12);

/**
 * One 1:1 call. Events (EventTarget): "state" (detail: state), "streams",
 * "remote-meta", "hangup" (detail: {reason, party}), "error" (detail: text).
 * States: ringing (incoming), inviting (outgoing), connecting, connected,
 * reconnecting, ended.
 */
export class Call extends EventTarget {
    constructor(client, room, { callId, direction, peerUserId, video, settings }) {
        super();
        this.client = client;
        this.room = room;
        this.roomId = room.id;
        this.callId = callId ?? `c${Date.now()}${randomId(8)}`;
        this.direction = direction; // "outbound" | "inbound"
        this.peerUserId = peerUserId;
        this.video = video;
        this.settings = settings;
        this.state = "new";
        this.opponentPartyId = undefined;
        this.pc = undefined;
        this.localStream = undefined;
        this.remoteStream = new MediaStream();
        this.remoteMeta = {};
        this.micMuted = false;
        this.camMuted = false;
        this.pendingCandidates = []; // ours, not yet sent
        this.remoteCandidates = []; // theirs, before a remote description
        this.candidateTimer = undefined;
        this.canSendCandidates = false;
        this.queue = Promise.resolve();
        this.inviteTimer = undefined;
        this.iceTimer = undefined;
        this.hangupReason = undefined;
        this.hangupParty = undefined;
        this.invite = undefined;
        this.connectedOnce = false;
        this.makingOffer = false;
    }

    setState(s) {
        if (this.state === s) return;
        this.state = s;
        this.dispatchEvent(new CustomEvent("state", { detail: s }));
    }

    fail(text) {
        this.dispatchEvent(new CustomEvent("error", { detail: text }));
    }

    base() {
        return { call_id: this.callId, party_id: ourPartyId, version: "1" };
    }

    async send(type, content) {
        return this.client.sendEvent(this.roomId, type, { ...this.base(), ...content });
    }

    metadata() {
        const s = this.localStream;
        if (!s) return {};
        return { [s.id]: { purpose: "m.usermedia", audio_muted: this.micMuted, video_muted: this.camMuted || s.getVideoTracks().length === 0 } };
    }

    async createPeer() {
        let iceServers = [];
        try {
            iceServers = await this.client.iceServers();
        } catch (err) {
            console.warn("no TURN servers", err);
        }
        const pc = new RTCPeerConnection({
            iceServers,
            iceTransportPolicy: this.settings.relayOnly && iceServers.length > 0 ? "relay" : "all",
        });
        this.pc = pc;
        pc.addEventListener("icecandidate", (e) => {
            if (!e.candidate) {
                this.pendingCandidates.push({ candidate: "" }); // end of candidates
            } else {
                this.pendingCandidates.push(e.candidate.toJSON());
            }
            this.scheduleCandidates();
        });
        pc.addEventListener("track", (e) => {
            if (!this.remoteStream.getTracks().includes(e.track)) this.remoteStream.addTrack(e.track);
            e.track.addEventListener("ended", () => this.remoteStream.removeTrack(e.track));
            this.dispatchEvent(new Event("streams"));
        });
        pc.addEventListener("iceconnectionstatechange", () => this.onIceState());
        pc.addEventListener("negotiationneeded", () => this.onNegotiationNeeded());
        return pc;
    }

    scheduleCandidates() {
        if (!this.canSendCandidates || this.candidateTimer) return;
        // Batch candidates (the spec asks clients not to send one event per candidate).
        this.candidateTimer = setTimeout(() => {
            this.candidateTimer = undefined;
            const list = this.pendingCandidates.splice(0);
            if (list.length === 0 || this.state === "ended") return;
            this.send("m.call.candidates", { candidates: list }).catch((err) => console.warn("sending candidates", err));
        }, 150);
    }

    async openMedia() {
        this.localStream = await getMedia({ audio: true, video: this.video, settings: this.settings });
        this.dispatchEvent(new Event("streams"));
    }

    /** Places the call: local media, offer, m.call.invite. */
    async place() {
        this.setState("inviting");
        try {
            await this.openMedia();
        } catch (err) {
            this.fail(explainMediaError(err));
            this.end("local", "user_media_failed", false);
            return;
        }
        const pc = await this.createPeer();
        for (const t of this.localStream.getTracks()) pc.addTrack(t, this.localStream);
        this.makingOffer = true;
        try {
            await pc.setLocalDescription(await pc.createOffer());
        } finally {
            this.makingOffer = false;
        }
        if (this.state === "ended") return;
        const invite = {
            lifetime: INVITE_LIFETIME_MS,
            offer: { type: "offer", sdp: pc.localDescription.sdp },
            sdp_stream_metadata: this.metadata(),
        };
        if (this.peerUserId) invite.invitee = this.peerUserId;
        try {
            await this.send("m.call.invite", invite);
        } catch (err) {
            this.fail(`The call could not be placed: ${err.message}`);
            this.end("local", "unknown_error", false);
            return;
        }
        this.canSendCandidates = true;
        this.scheduleCandidates();
        this.inviteTimer = setTimeout(() => {
            if (this.state === "inviting") this.hangup("invite_timeout");
        }, INVITE_LIFETIME_MS);
    }

    /** Sets up an incoming call from its m.call.invite. */
    receive(ev) {
        this.invite = ev;
        this.opponentPartyId = ev.content.party_id;
        this.peerUserId = ev.sender;
        const meta = ev.content.sdp_stream_metadata;
        if (meta) this.remoteMeta = meta;
        this.video = /\bm=video\b/.test(ev.content.offer?.sdp ?? "");
        this.setState("ringing");
        const left = (ev.content.lifetime ?? INVITE_LIFETIME_MS) - (ev.unsigned?.age ?? 0);
        this.inviteTimer = setTimeout(() => {
            if (this.state === "ringing") this.end("remote", "invite_timeout", false);
        }, Math.max(left, 1000));
    }

    /** Answers an incoming call; video false answers with the microphone only. */
    async answer(video) {
        if (this.state !== "ringing") return;
        clearTimeout(this.inviteTimer);
        this.video = video;
        this.setState("connecting");
        try {
            await this.openMedia();
        } catch (err) {
            this.fail(explainMediaError(err));
            this.hangup("user_media_failed");
            return;
        }
        const pc = await this.createPeer();
        await pc.setRemoteDescription(this.invite.content.offer);
        for (const t of this.localStream.getTracks()) pc.addTrack(t, this.localStream);
        await this.flushRemoteCandidates();
        await pc.setLocalDescription(await pc.createAnswer());
        if (this.state === "ended") return;
        try {
            await this.send("m.call.answer", { answer: { type: "answer", sdp: pc.localDescription.sdp }, sdp_stream_metadata: this.metadata() });
        } catch (err) {
            this.fail(`Could not answer: ${err.message}`);
            this.end("local", "unknown_error", false);
            return;
        }
        this.canSendCandidates = true;
        this.scheduleCandidates();
    }

    /** Declines an incoming call (spec: m.call.reject). */
    reject() {
        if (this.state !== "ringing") return;
        this.send("m.call.reject", {}).catch(() => {});
        this.end("local", "user_hangup", false);
    }

    /** Hangs up (spec: m.call.hangup). */
    hangup(reason = "user_hangup") {
        if (this.state === "ended") return;
        this.send("m.call.hangup", { reason }).catch(() => {});
        this.end("local", reason, false);
    }

    end(party, reason) {
        if (this.state === "ended") return;
        this.hangupParty = party;
        this.hangupReason = reason;
        clearTimeout(this.inviteTimer);
        clearTimeout(this.iceTimer);
        clearTimeout(this.candidateTimer);
        this.pc?.close();
        for (const t of this.localStream?.getTracks() ?? []) t.stop();
        this.setState("ended");
        this.dispatchEvent(new CustomEvent("hangup", { detail: { party, reason } }));
    }

    setMicMuted(m) {
        this.micMuted = m;
        for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !m;
        this.sendMeta();
    }

    setCamMuted(m) {
        this.camMuted = m;
        for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = !m;
        this.sendMeta();
    }

    /** Re-opens the camera and microphone picked in the settings, mid-call. */
    async switchDevices() {
        if (this.state === "ended" || !this.localStream || !this.pc) return;
        const fresh = await getMedia({ audio: true, video: this.video, settings: this.settings });
        for (const nt of fresh.getTracks()) {
            const old = this.localStream.getTracks().find((t) => t.kind === nt.kind);
            nt.enabled = nt.kind === "audio" ? !this.micMuted : !this.camMuted;
            const sender = this.pc.getSenders().find((s) => s.track === old || (s === this.videoSender && nt.kind === "video"));
            if (!(nt.kind === "video" && this.screenTrack)) await sender?.replaceTrack(nt);
            if (old) {
                this.localStream.removeTrack(old);
                old.stop();
            }
            this.localStream.addTrack(nt);
            if (nt.kind === "video") this.cameraTrack = nt;
        }
        this.dispatchEvent(new Event("streams"));
    }

    sendMeta() {
        if (this.state === "ended" || !this.pc) return;
        this.send("m.call.sdp_stream_metadata_changed", { sdp_stream_metadata: this.metadata() }).catch(() => {});
    }

    /** Handles a room event of this call, in order. */
    handle(ev) {
        this.queue = this.queue.then(() => this.handleNow(ev)).catch((err) => console.warn(`call event ${ev.type}`, err));
        return this.queue;
    }

    fromOpponent(ev) {
        const p = ev.content.party_id;
        if (ev.sender === this.client.userId && p === ourPartyId) return false; // our own echo
        return this.opponentPartyId === undefined || p === this.opponentPartyId;
    }

    async handleNow(ev) {
        if (this.state === "ended") return;
        const c = ev.content;
        if (ev.sender === this.client.userId && c.party_id === ourPartyId) return;
        switch (ev.type) {
            case "m.call.answer": {
                if (this.direction !== "outbound") {
                    // Another device of ours answered (spec: select_answer decides); stop ringing here.
                    if (ev.sender === this.client.userId && this.state === "ringing") this.end("remote", "answered_elsewhere");
                    return;
                }
                if (this.opponentPartyId !== undefined) return; // first answer wins
                this.opponentPartyId = c.party_id;
                clearTimeout(this.inviteTimer);
                this.setState("connecting");
                if (c.sdp_stream_metadata) this.setRemoteMeta(c.sdp_stream_metadata);
                await this.pc.setRemoteDescription(c.answer);
                await this.flushRemoteCandidates();
                this.send("m.call.select_answer", { selected_party_id: c.party_id }).catch(() => {});
                return;
            }
            case "m.call.select_answer":
                if (this.direction === "inbound" && c.selected_party_id && c.selected_party_id !== ourPartyId) {
                    this.end("remote", "answered_elsewhere");
                }
                return;
            case "m.call.candidates":
                if (!this.fromOpponent(ev)) return;
                for (const cand of c.candidates ?? []) this.remoteCandidates.push(cand);
                await this.flushRemoteCandidates();
                return;
            case "m.call.negotiate":
                if (!this.fromOpponent(ev)) return;
                if (c.sdp_stream_metadata) this.setRemoteMeta(c.sdp_stream_metadata);
                await this.onNegotiate(c.description);
                return;
            case "m.call.sdp_stream_metadata_changed":
                if (this.fromOpponent(ev) && c.sdp_stream_metadata) this.setRemoteMeta(c.sdp_stream_metadata);
                return;
            case "m.call.hangup":
                if (!this.fromOpponent(ev) && !(ev.sender === this.client.userId)) return;
                this.end("remote", c.reason || "user_hangup");
                return;
            case "m.call.reject":
                if (this.direction === "outbound" && this.opponentPartyId === undefined) this.end("remote", "rejected");
                else if (this.direction === "inbound" && ev.sender === this.client.userId) this.end("remote", "answered_elsewhere");
                return;
        }
    }

    setRemoteMeta(m) {
        this.remoteMeta = m;
        this.dispatchEvent(new Event("remote-meta"));
    }

    /** Whether the opponent's camera or microphone is muted, from their metadata. */
    remoteMuted() {
        const m = Object.values(this.remoteMeta).find((s) => s.purpose === "m.usermedia") ?? {};
        return { audio: !!m.audio_muted, video: !!m.video_muted };
    }

    async flushRemoteCandidates() {
        if (!this.pc || !this.pc.remoteDescription) return;
        const list = this.remoteCandidates.splice(0);
        for (const cand of list) {
            if (!cand || !cand.candidate) continue; // end of candidates
            try {
                await this.pc.addIceCandidate(cand);
            } catch (err) {
                console.warn("remote candidate refused", err);
            }
        }
    }

    /** Applies m.call.negotiate (spec: "Call renegotiation"), answering offers. */
    async onNegotiate(desc) {
        if (!desc || !this.pc) return;
        const polite = this.direction === "inbound";
        const collision = desc.type === "offer" && (this.makingOffer || this.pc.signalingState !== "stable");
        if (collision && !polite) return;
        await this.pc.setRemoteDescription(desc);
        await this.flushRemoteCandidates();
        if (desc.type === "offer") {
            await this.pc.setLocalDescription();
            await this.send("m.call.negotiate", {
                lifetime: INVITE_LIFETIME_MS,
                description: { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp },
                sdp_stream_metadata: this.metadata(),
            });
        }
    }

    async onNegotiationNeeded() {
        // Only after the call is set up: the invite and answer carry the first offer/answer.
        if (!this.connectedOnce || this.state === "ended") return;
        await this.renegotiate(false);
    }

    async renegotiate(iceRestart) {
        if (!this.pc || this.pc.signalingState !== "stable") return;
        this.makingOffer = true;
        try {
            await this.pc.setLocalDescription(await this.pc.createOffer({ iceRestart }));
            await this.send("m.call.negotiate", {
                lifetime: INVITE_LIFETIME_MS,
                description: { type: "offer", sdp: this.pc.localDescription.sdp },
                sdp_stream_metadata: this.metadata(),
            });
        } catch (err) {
            console.warn("renegotiation", err);
        } finally {
            this.makingOffer = false;
        }
    }

    onIceState() {
        const s = this.pc.iceConnectionState;
        if (s === "connected" || s === "completed") {
            clearTimeout(this.iceTimer);
            this.iceTimer = undefined;
            this.connectedOnce = true;
            this.setState("connected");
        } else if ((s === "disconnected" || s === "failed") && this.state !== "ended") {
            if (!this.connectedOnce) {
                if (s === "failed") this.hangup("ice_failed");
                return;
            }
            this.setState("reconnecting");
            // The caller restarts ICE (spec: renegotiation with a new ICE
            // ufrag); both give up if media does not come back.
            if (s === "failed" && this.direction === "outbound") {
                this.pc.restartIce();
                this.renegotiate(true);
            }
            if (!this.iceTimer) {
                this.iceTimer = setTimeout(() => {
                    this.iceTimer = undefined;
                    const now = this.pc?.iceConnectionState;
                    if (this.state === "reconnecting" && now !== "connected" && now !== "completed") this.hangup("ice_failed");
                }, 30000);
            }
        }
    }

    /** Inbound video stats for the quality indicator and tests. */
    async stats() {
        if (!this.pc) return null;
        return summarizeStats(await this.pc.getStats());
    }
}

/**
 * Boils an RTCStatsReport (W3C webrtc-stats) down to what a person needs:
 * inbound video frames decoded, bitrate inputs, packet loss and round trip.
 */
export function summarizeStats(report) {
    const out = { framesDecoded: 0, bytesReceived: 0, packetsReceived: 0, packetsLost: 0, rttMs: null, frameWidth: 0, relay: false, ts: 0 };
    let pairId;
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    for (const s of byId.values()) {
        if (s.type === "inbound-rtp") {
            out.bytesReceived += s.bytesReceived ?? 0;
            out.packetsReceived += s.packetsReceived ?? 0;
            out.packetsLost += Math.max(0, s.packetsLost ?? 0);
            if (s.kind === "video") {
                out.framesDecoded += s.framesDecoded ?? 0;
                out.frameWidth = Math.max(out.frameWidth, s.frameWidth ?? 0);
            }
            out.ts = Math.max(out.ts, s.timestamp);
        }
        if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    }
    const pair = pairId ? byId.get(pairId) : [...byId.values()].find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded");
    if (pair) {
        if (typeof pair.currentRoundTripTime === "number") out.rttMs = Math.round(pair.currentRoundTripTime * 1000);
        out.relay = byId.get(pair.localCandidateId)?.candidateType === "relay";
    }
    return out;
}
