// Diagnostic, not a test (node --test does not pick it up): a three-way
// group call of our web client through the SFU focus on a fresh `serve
// --dev`, sampling every 2 s each page's getStats (inbound fps, size, bytes;
// the publisher's qualityLimitationReason, targetBitrate) and the SFU's
// metrics; C mutes and leaves after HOLD ms, sampling goes on for AFTER ms.
// SWITCHBOARD_TEST_BINARY=$PWD/../../bin/switchboard node diag/groupcall-probe.mjs
// writes JSON lines to OUT (default /tmp/probe17.jsonl) and the server log
// next to it.
import { writeFile } from "node:fs/promises";
import { chromium } from "playwright-core";
import { startSwitchboard, waitUntil } from "../server.mjs";
import { browserArgs, chromiumPath, openApp, openRoom, phone, registerViaForm, localpart, tiles } from "../app.mjs";

const bin = process.env.SWITCHBOARD_TEST_BINARY;
const out = [];
const t0 = Date.now();
const log = (o) => { const l = JSON.stringify({ t: ((Date.now() - t0) / 1000).toFixed(1), ...o }); out.push(l); console.log(l); };
const server = await startSwitchboard(bin, { extraArgs: ["--turn-allow-cidrs", "127.0.0.1/32", "--turn-relay-ip", "127.0.0.1"] });
const browser = await chromium.launch({ executablePath: chromiumPath, args: browserArgs, timeout: 60_000 });
const clog = [];
const pages = [];
async function sample(p) {
    return p.page.evaluate(async () => {
        const res = [];
        for (const pc of window.__pcs ?? []) {
            if (pc.connectionState === "closed") continue;
            (await pc.getStats()).forEach((s) => {
                if (s.type === "inbound-rtp") res.push({ in: s.kind, mid: s.mid, fps: s.framesPerSecond, w: s.frameWidth, h: s.frameHeight, dec: s.framesDecoded, bytes: s.bytesReceived, lost: s.packetsLost, nack: s.nackCount, pli: s.pliCount, fir: s.firCount, frz: s.freezeCount });
                if (s.type === "outbound-rtp" && s.kind === "video") res.push({ out: s.rid, fps: s.framesPerSecond, w: s.frameWidth, h: s.frameHeight, bytes: s.bytesSent, tgt: s.targetBitrate, qlr: s.qualityLimitationReason, qld: s.qualityLimitationDurations, active: s.active, encMs: s.totalEncodeTime, enc: s.framesEncoded });
                if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") res.push({ pair: 1, aob: s.availableOutgoingBitrate, rtt: s.currentRoundTripTime });
            });
        }
        const tl = [...document.querySelectorAll("#tiles .quality")].map((q) => q.hidden ? null : q.textContent);
        return { res, tiles: tl };
    });
}
const metricNames = ["switchboard_sfu_keyframe_requests_total", "switchboard_sfu_nacks_total", "switchboard_sfu_layer_switches_total", "switchboard_sfu_dropped_packets_total", "switchboard_sfu_forwarded_bytes_total"];
async function sfu() {
    const o = {};
    for (const n of metricNames) o[n.replace("switchboard_sfu_", "")] = await server.metricSum(n).catch(() => null);
    o.bwe_le100k = await server.metricSum("switchboard_sfu_estimated_bandwidth_bps_bucket", { le: "100000" }).catch(() => null);
    o.bwe_le200k = await server.metricSum("switchboard_sfu_estimated_bandwidth_bps_bucket", { le: "200000" }).catch(() => null);
    o.bwe_le400k = await server.metricSum("switchboard_sfu_estimated_bandwidth_bps_bucket", { le: "400000" }).catch(() => null);
    o.bwe_count = await server.metricSum("switchboard_sfu_estimated_bandwidth_bps_count").catch(() => null);
    return o;
}
let stop = false;
async function sampler() {
    while (!stop) {
        const at = Date.now();
        for (const p of pages) { try { log({ page: p.label, ...(await sample(p)) }); } catch (e) { log({ page: p.label, err: String(e) }); } }
        log({ sfu: await sfu(), load: (await import("node:os")).loadavg()[0] });
        const left = 2000 - (Date.now() - at);
        if (left > 0) await new Promise((r) => setTimeout(r, left));
    }
}
try {
    for (const [l, vp] of [["A"], ["B"], ["C", phone]]) {
        const p = await openApp(browser, server, l, clog, { quality: "sd", ...(vp ? { viewport: vp } : {}) });
        await p.context.addInitScript(() => { const O = window.RTCPeerConnection; window.__pcs = []; window.RTCPeerConnection = function (...a) { const pc = new O(...a); window.__pcs.push(pc); return pc; }; window.RTCPeerConnection.prototype = O.prototype; });
        await p.page.reload(); await p.page.locator("#login-form").waitFor({ state: "visible", timeout: 20000 });
        pages.push(p);
    }
    const [a, b, c] = pages;
    for (const [p, n] of [[a, "gina"], [b, "hank"], [c, "iris"]]) await registerViaForm(p, localpart(n));
    await a.page.fill("#new-room-name", "Team");
    await a.page.fill("#new-room-invite", `${b.userId} ${c.userId}`);
    await a.page.click("#create-room");
    await a.page.locator("#room-name", { hasText: "Team" }).waitFor({ timeout: 20000 });
    for (const p of [b, c]) { await openRoom(p, "Team"); await p.page.click("#accept-invite"); await p.page.locator("#composer").waitFor({ state: "visible", timeout: 20000 }); }
    await a.page.locator("#room-sub", { hasText: "3 members" }).waitFor({ timeout: 20000 });
    const started = Date.now();
    log({ ev: "click join" });
    await a.page.click("#group-call");
    for (const p of [b, c]) { await p.page.locator("#group-call", { hasText: "Join call" }).waitFor({ timeout: 20000 }); await p.page.click("#group-call"); }
    const s = sampler();
    await waitUntil("six remote videos", 180000, async () => {
        for (const p of pages) { const ts = (await tiles(p)).filter((t) => !t.local && t.videoWidth > 0 && t.frames > 0); if (ts.length < 2) return false; }
        return true;
    });
    log({ ev: "all six decoding", ms: Date.now() - started });
    await new Promise((r) => setTimeout(r, Number(process.env.HOLD ?? 30000)));
    await c.page.click("#toggle-mic");
    await new Promise((r) => setTimeout(r, 4000));
    log({ ev: "C leaves" });
    await c.page.click("#hangup");
    await new Promise((r) => setTimeout(r, Number(process.env.AFTER ?? 40000)));
    stop = true; await s;
} finally {
    await writeFile(process.env.OUT ?? "/tmp/probe17.jsonl", out.join("\n"));
    await writeFile((process.env.OUT ?? "/tmp/probe17.jsonl") + ".server.log", server.log());
    await browser.close(); await server.stop();
}
