// The call screen: a grid of tiles (video, name, mute marks, a quality
// indicator) and the control bar. Both 1:1 and group calls draw into it.

const $ = (id) => document.getElementById(id);

/** A colour for a name, stable across reloads. */
export function colourFor(s) {
    let h = 0;
    for (const ch of s) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return `hsl(${h % 360} 55% 45%)`;
}

/** The initial a person's avatar shows. */
export function initial(name) {
    const s = name.replace(/^[@#!]/, "");
    return (s[0] ?? "?").toUpperCase();
}

export function avatar(name) {
    const a = document.createElement("span");
    a.className = "avatar";
    a.style.background = colourFor(name);
    a.textContent = initial(name);
    a.setAttribute("aria-hidden", "true");
    return a;
}

/** One participant's tile. */
export class Tile {
    constructor(key, { name, local = false }) {
        this.key = key;
        this.el = document.createElement("figure");
        this.el.className = "tile";
        this.el.dataset.key = key;
        if (local) this.el.classList.add("local");
        this.video = document.createElement("video");
        this.video.autoplay = true;
        this.video.playsInline = true;
        this.video.muted = local; // never play our own microphone back
        this.placeholder = document.createElement("div");
        this.placeholder.className = "placeholder";
        this.label = document.createElement("figcaption");
        this.label.className = "label";
        this.micIc = document.createElement("span");
        this.micIc.className = "muted-ic";
        this.nameEl = document.createElement("span");
        this.nameEl.className = "nm";
        this.label.append(this.micIc, this.nameEl);
        this.quality = document.createElement("span");
        this.quality.className = "quality";
        this.quality.hidden = true;
        this.el.append(this.video, this.placeholder, this.label, this.quality);
        this.name = "";
        this.setName(name);
        this.setMuted({ audio: false, video: false });
    }

    setName(name) {
        if (name === this.name) return;
        this.name = name;
        this.nameEl.textContent = name;
        this.el.dataset.name = name;
        this.placeholder.replaceChildren(avatar(name));
        this.el.setAttribute("aria-label", name);
    }

    setStream(stream) {
        if (this.video.srcObject !== stream) {
            this.video.srcObject = stream;
            this.video.play().catch(() => {});
        }
    }

    setMuted({ audio, video }) {
        this.el.dataset.audioMuted = String(!!audio);
        this.el.dataset.videoMuted = String(!!video);
        this.micIc.textContent = audio ? "🔇" : "";
        this.micIc.title = audio ? "Microphone off" : "";
        this.micIc.setAttribute("aria-label", audio ? "microphone off" : "");
        this.video.style.visibility = video ? "hidden" : "visible";
        this.placeholder.hidden = !video;
    }

    setSpeaking(on) {
        this.el.classList.toggle("speaking", on);
    }

    setScreen(on) {
        this.el.classList.toggle("screen", on);
    }

    /** Shows bitrate, loss and round trip (from getStats) as a coloured dot and text. */
    setQuality(q) {
        if (!q) {
            this.quality.hidden = true;
            return;
        }
        this.quality.hidden = false;
        let level = "good";
        if (q.lossPct > 5 || (q.rttMs ?? 0) > 400) level = "poor";
        else if (q.lossPct > 1 || (q.rttMs ?? 0) > 200) level = "fair";
        this.quality.className = `quality ${level}`;
        const parts = [`${Math.round(q.kbps)} kb/s`];
        parts.push(`${q.lossPct.toFixed(q.lossPct < 10 ? 1 : 0)}% loss`);
        if (q.rttMs !== null && q.rttMs !== undefined) parts.push(`${q.rttMs} ms`);
        this.quality.textContent = parts.join(" · ");
        this.quality.title = `Connection ${level}: ${parts.join(", ")}`;
        this.el.dataset.quality = level;
    }
}

/**
 * Turns two getStats summaries of one stream into bitrate (kb/s) and loss
 * since the previous one.
 */
export function qualityBetween(prev, cur) {
    if (!prev || !cur || cur.ts <= prev.ts) return null;
    const secs = (cur.ts - prev.ts) / 1000;
    const kbps = Math.max(0, ((cur.bytesReceived - prev.bytesReceived) * 8) / 1000 / secs);
    const got = cur.packetsReceived - prev.packetsReceived;
    const lost = Math.max(0, cur.packetsLost - prev.packetsLost);
    const lossPct = got + lost > 0 ? (100 * lost) / (got + lost) : 0;
    return { kbps, lossPct, rttMs: cur.rttMs };
}

/** The call screen. */
export class CallView {
    constructor() {
        this.root = $("call-view");
        this.tilesEl = $("tiles");
        this.tiles = new Map();
        this.handlers = {};
        $("toggle-mic").addEventListener("click", () => this.handlers.mic?.());
        $("toggle-cam").addEventListener("click", () => this.handlers.cam?.());
        $("toggle-screen").addEventListener("click", () => this.handlers.screen?.());
        $("call-devices").addEventListener("click", () => this.handlers.devices?.());
        $("hangup").addEventListener("click", () => this.handlers.hangup?.());
    }

    open({ title, oneToOne, hangupLabel, handlers, canShare = true }) {
        this.handlers = handlers;
        $("call-title").textContent = title;
        this.tilesEl.classList.toggle("one-to-one", oneToOne);
        $("hangup").querySelector(".lbl").textContent = hangupLabel;
        $("hangup").setAttribute("aria-label", hangupLabel);
        $("toggle-screen").hidden = !canShare;
        this.setMic(false);
        this.setCam(false);
        this.setScreen(false);
        this.root.hidden = false;
        $("hangup").focus();
    }

    close() {
        this.root.hidden = true;
        for (const t of this.tiles.values()) t.video.srcObject = null;
        this.tiles.clear();
        this.tilesEl.replaceChildren();
        this.handlers = {};
        this.setStatus("");
    }

    get isOpen() {
        return !this.root.hidden;
    }

    setStatus(text, bad = false) {
        const s = $("call-status");
        s.textContent = text;
        s.classList.toggle("bad", bad);
    }

    tile(key, opts) {
        let t = this.tiles.get(key);
        if (!t) {
            t = new Tile(key, opts);
            this.tiles.set(key, t);
            if (opts.local) this.tilesEl.prepend(t.el);
            else this.tilesEl.append(t.el);
        } else if (opts.name) {
            t.setName(opts.name);
        }
        return t;
    }

    removeTile(key) {
        const t = this.tiles.get(key);
        if (!t) return;
        t.video.srcObject = null;
        t.el.remove();
        this.tiles.delete(key);
    }

    setMic(muted) {
        const b = $("toggle-mic");
        b.setAttribute("aria-pressed", String(muted));
        b.setAttribute("aria-label", muted ? "Unmute microphone" : "Mute microphone");
        b.querySelector(".lbl").textContent = muted ? "Unmute" : "Mute";
        b.querySelector(".ic").textContent = muted ? "🔇" : "🎙";
    }

    setCam(off) {
        const b = $("toggle-cam");
        b.setAttribute("aria-pressed", String(off));
        b.setAttribute("aria-label", off ? "Turn camera on" : "Turn camera off");
        b.querySelector(".lbl").textContent = off ? "Camera on" : "Camera off";
    }

    setScreen(on) {
        const b = $("toggle-screen");
        b.setAttribute("aria-pressed", String(on));
        b.setAttribute("aria-label", on ? "Stop sharing screen" : "Share screen");
        b.querySelector(".lbl").textContent = on ? "Stop sharing" : "Share screen";
    }
}
