// The call screen: a grid of tiles (video, name, mute marks, a quality
// indicator) and the control bar. Both 1:1 and group calls draw into it.

const $ = (id) => document.getElementById(id);

/** Inline SVG icons (24×24, currentColor): no icon font or emoji needed. */
const paths = {
    mic: '<path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3z"/><path d="M19 11a7 7 0 0 1-14 0M12 18v3" fill="none"/>',
    micOff: '<path d="M15 9.3V5a3 3 0 0 0-5.9-.8M9 9v2a3 3 0 0 0 5.1 2.1M19 11a7 7 0 0 1-1.2 3.9M5 11a7 7 0 0 0 11 5.7M12 18v3M3 3l18 18" fill="none"/>',
    cam: '<rect x="2" y="6" width="14" height="12" rx="2"/><path d="M16 10l6-3v10l-6-3z"/>',
    camOff: '<path d="M16 16v1a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h2m4 0h6a1 1 0 0 1 1 1v3l6-3v10M3 3l18 18" fill="none"/>',
    screen: '<rect x="2" y="4" width="20" height="13" rx="2" fill="none"/><path d="M8 21h8M12 17v4M12 13V8M9.5 10.5L12 8l2.5 2.5" fill="none"/>',
    gear: '<circle cx="12" cy="12" r="3" fill="none"/><path d="M12 2v3M12 19v3M4.2 4.2l2.1 2.1M17.7 17.7l2.1 2.1M2 12h3M19 12h3M4.2 19.8l2.1-2.1M17.7 6.3l2.1-2.1" fill="none"/>',
    hangup: '<path d="M3 15.5c5-5 13-5 18 0l-2.5 2.5-3.5-1.5v-2.5a11 11 0 0 0-6 0v2.5L5.5 18z"/>',
};

/** An SVG icon element by name. */
export function icon(name) {
    const span = document.createElement("span");
    span.className = "ic";
    span.setAttribute("aria-hidden", "true");
    span.innerHTML = `<svg viewBox="0 0 24 24" width="20" height="20" fill="currentColor" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${paths[name]}</svg>`;
    return span;
}

function setIcon(button, name) {
    button.querySelector(".ic")?.replaceWith(icon(name));
}

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
        this.micIc.replaceChildren(...(audio ? [icon("micOff")] : []));
        this.micIc.title = audio ? "Microphone off" : "";
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
        const main = document.createElement("span");
        main.textContent = parts[0];
        const detail = document.createElement("span");
        detail.className = "detail";
        detail.textContent = ` · ${parts.slice(1).join(" · ")}`;
        this.quality.replaceChildren(main, detail);
        this.quality.title = `Connection ${level}: ${parts.join(", ")}`;
        this.quality.setAttribute("aria-label", `Connection ${level}: ${parts.join(", ")}`);
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
    if (got + lost === 0) return null; // nothing arrived yet: no badge rather than "0 kb/s"
    const lossPct = got + lost > 0 ? (100 * lost) / (got + lost) : 0;
    return { kbps, lossPct, rttMs: cur.rttMs };
}

/** The call screen. */
export class CallView {
    constructor() {
        this.root = $("call-view");
        setIcon($("toggle-screen"), "screen");
        setIcon($("call-devices"), "gear");
        setIcon($("hangup"), "hangup");
        this.tilesEl = $("tiles");
        this.tiles = new Map();
        new ResizeObserver(() => this.layout()).observe(this.tilesEl);
        this.handlers = {};
        $("toggle-mic").addEventListener("click", () => this.handlers.mic?.());
        $("toggle-cam").addEventListener("click", () => this.handlers.cam?.());
        $("toggle-screen").addEventListener("click", () => this.handlers.screen?.());
        $("call-devices").addEventListener("click", () => this.handlers.devices?.());
        $("hangup").addEventListener("click", () => this.handlers.hangup?.());
    }

    /**
     * Sizes the grid so that every tile is as large as it can be at 16:9
     * within the screen: tries each column count, keeps the widest tile.
     */
    layout() {
        if (this.root.hidden || this.oneToOne) {
            this.tilesEl.style.gridTemplateColumns = "";
            return;
        }
        const n = this.tilesEl.children.length;
        const W = this.tilesEl.clientWidth - 16;
        const H = this.tilesEl.clientHeight;
        if (n === 0 || W <= 0 || H <= 0) return;
        const gap = 10;
        let best = { w: 0, cols: 1 };
        for (let cols = 1; cols <= n; cols++) {
            const rows = Math.ceil(n / cols);
            const w = Math.min((W - gap * (cols - 1)) / cols, ((H - gap * (rows - 1)) / rows) * (16 / 9));
            if (w > best.w) best = { w, cols };
        }
        this.tilesEl.style.gridTemplateColumns = `repeat(${best.cols}, ${Math.floor(best.w)}px)`;
    }

    open({ title, oneToOne, hangupLabel, handlers, canShare = true }) {
        this.oneToOne = oneToOne;
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
        this.layout();
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

    /**
     * Every 2 s, asks fetchStats for getStats summaries keyed by tile and
     * shows each tile's bitrate, loss and round trip since the last time.
     */
    startStats(fetchStats) {
        this.stopStats();
        let prev = {};
        this.statsTimer = setInterval(async () => {
            let cur;
            try {
                cur = await fetchStats();
            } catch {
                cur = {};
            }
            for (const [key, s] of Object.entries(cur)) this.tiles.get(key)?.setQuality(qualityBetween(prev[key], s));
            prev = cur;
        }, 2000);
    }

    stopStats() {
        clearInterval(this.statsTimer);
        this.statsTimer = undefined;
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
            this.layout();
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
        this.layout();
    }

    setMic(muted) {
        const b = $("toggle-mic");
        b.setAttribute("aria-pressed", String(muted));
        b.setAttribute("aria-label", muted ? "Unmute microphone" : "Mute microphone");
        b.querySelector(".lbl").textContent = muted ? "Unmute" : "Mute";
        setIcon(b, muted ? "micOff" : "mic");
    }

    setCam(off) {
        const b = $("toggle-cam");
        b.setAttribute("aria-pressed", String(off));
        b.setAttribute("aria-label", off ? "Turn camera on" : "Turn camera off");
        b.querySelector(".lbl").textContent = off ? "Camera on" : "Camera off";
        setIcon(b, off ? "camOff" : "cam");
    }

    setScreen(on) {
        const b = $("toggle-screen");
        b.setAttribute("aria-pressed", String(on));
        b.setAttribute("aria-label", on ? "Stop sharing screen" : "Share screen");
        b.querySelector(".lbl").textContent = on ? "Stop sharing" : "Share screen";
    }
}
