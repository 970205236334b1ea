// The page script of livekit.test.mjs: the real livekit-client from npm,
// bundled by the test with esbuild. window.lk drives one participant.

import { LogLevel, Room, RoomEvent, Track, createLocalTracks, setLogLevel } from "livekit-client";

if (new URLSearchParams(location.search).has("debug")) setLogLevel(LogLevel.debug);

let room;
const events = [];

window.lk = {
    events,
    async connect(url, jwt) {
        room = new Room({ adaptiveStream: false, dynacast: false });
        room.on(RoomEvent.ParticipantConnected, (p) => events.push(`joined ${p.identity}`));
        room.on(RoomEvent.ParticipantDisconnected, (p) => events.push(`left ${p.identity}`));
        room.on(RoomEvent.TrackSubscribed, (track, pub, p) => {
            events.push(`track ${p.identity} ${track.kind}`);
            const el = track.attach();
            el.muted = true;
            el.dataset.identity = p.identity;
            el.dataset.kind = track.kind;
            document.body.appendChild(el);
        });
        room.on(RoomEvent.Disconnected, (reason) => events.push(`disconnected ${reason}`));
        // A resume (signal connection only) or a full reconnect.
        room.on(RoomEvent.SignalReconnecting, () => events.push("signal-reconnecting"));
        room.on(RoomEvent.Reconnecting, () => events.push("reconnecting"));
        room.on(RoomEvent.Reconnected, () => events.push("reconnected"));
        await room.connect(url, jwt, { autoSubscribe: true });
        const tracks = await createLocalTracks({ audio: true, video: { resolution: { width: 320, height: 240 } } });
        // Low bit rates: three Chromium pages and the server share two
        // cores here, and the SFU pauses a video that does not fit a
        // subscriber's estimated bandwidth.
        for (const t of tracks) {
            await room.localParticipant.publishTrack(t, {
                simulcast: false, videoEncoding: { maxBitrate: 100_000, maxFramerate: 15 },
            });
        }
        return room.localParticipant.sid;
    },
    /** Remote participants and what of theirs this page decodes. */
    async state() {
        const out = {};
        for (const p of room.remoteParticipants.values()) {
            const s = { video: 0, audio: 0, width: 0 };
            for (const pub of p.trackPublications.values()) {
                const t = pub.track;
                if (!t || !t.receiver) continue;
                const stats = await t.receiver.getStats();
                for (const r of stats.values()) {
                    if (r.type !== "inbound-rtp") continue;
                    if (r.kind === "video") {
                        s.video = Math.max(s.video, r.framesDecoded ?? 0);
                        s.width = Math.max(s.width, r.frameWidth ?? 0);
                    } else if (r.kind === "audio") {
                        s.audio = Math.max(s.audio, r.packetsReceived ?? 0);
                    }
                }
            }
            for (const el of document.querySelectorAll(`video[data-identity="${CSS.escape(p.identity)}"]`)) {
                s.videoWidth = Math.max(s.videoWidth ?? 0, el.videoWidth);
            }
            out[p.identity] = s;
        }
        return out;
    },
    async debugStats() {
        const out = [];
        for (const p of room.remoteParticipants.values()) {
            for (const pub of p.trackPublications.values()) {
                const t = pub.track;
                if (!t || !t.receiver || t.kind !== "video") continue;
                for (const r of (await t.receiver.getStats()).values()) {
                    if (r.type === "inbound-rtp") out.push({ from: p.identity.slice(0, 4), framesReceived: r.framesReceived, framesDecoded: r.framesDecoded, framesDropped: r.framesDropped, keyFramesDecoded: r.keyFramesDecoded, packetsReceived: r.packetsReceived, packetsLost: r.packetsLost, nackCount: r.nackCount, pliCount: r.pliCount, firCount: r.firCount, decoder: r.decoderImplementation, codec: r.codecId });
                }
            }
        }
        for (const pub of room.localParticipant.trackPublications.values()) {
            const t = pub.track;
            if (!t || !t.sender || t.kind !== "video") continue;
            for (const r of (await t.sender.getStats()).values()) {
                if (r.type === "outbound-rtp") out.push({ out: true, framesEncoded: r.framesEncoded, framesSent: r.framesSent, keyFramesEncoded: r.keyFramesEncoded, packetsSent: r.packetsSent, pliCount: r.pliCount, nackCount: r.nackCount, ql: r.qualityLimitationReason, target: r.targetBitrate, rid: r.rid });
            }
        }
        return out;
    },
    /** Drops the signal WebSocket as a network change does; livekit-client resumes. */
    async dropSignal() {
        await room.simulateScenario("signal-reconnect");
    },
    sid() {
        return room.localParticipant.sid;
    },
    async leave() {
        await room.disconnect();
    },
    kinds: Track.Kind,
};
