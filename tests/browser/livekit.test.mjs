// MatrixRTC with LiveKit clients on switchboard alone: three Chromium pages
// with the real livekit-client from npm get LiveKit tokens the way Element
// Call does (an OpenID token from the homeserver posted to
// {livekit_service_url}/sfu/get), connect to switchboard's SFU, publish a
// fake camera and microphone, and each decodes every other's video and
// receives their audio; one loses its signal connection and resumes it
// (the same participant, video flowing both ways, nobody told it left);
// one leaves and the others see it go.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

import { api, register } from "./matrix.mjs";
import { buildSwitchboard, startStaticServer, startSwitchboard, waitUntil } from "./server.mjs";
import { browserArgs, chromiumPath, tail } from "./app.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const STEP_MS = 60_000;

let bin, binDir, pageDir, site, browser;

before(async () => {
    await access(chromiumPath, constants.X_OK);
    ({ bin, dir: binDir } = await buildSwitchboard());
    pageDir = await mkdtemp(path.join(tmpdir(), "switchboard-livekit-page-"));
    const js = path.join(pageDir, "livekit.js");
    await esbuild.build({
        entryPoints: [path.join(here, "livekit-page.mjs")], outfile: js, bundle: true, format: "esm",
        platform: "browser", target: "chrome120", logLevel: "warning",
    });
    const html = path.join(pageDir, "index.html");
    await writeFile(html, `<!doctype html><meta charset="utf-8"><title>livekit</title><script type="module" src="/livekit.js"></script>`);
    site = await startStaticServer({ "/": html, "/livekit.js": js });
    browser = await chromium.launch({ executablePath: chromiumPath, args: browserArgs, timeout: 60_000 });
});

after(async () => {
    await browser?.close();
    await site?.close();
    if (pageDir) await rm(pageDir, { recursive: true, force: true });
    if (binDir) await rm(binDir, { recursive: true, force: true });
});

describe("MatrixRTC with livekit-client on switchboard's SFU", () => {
    test("three participants get tokens via OpenID and /sfu/get, see and hear each other; one leaves", async (t) => {
        const sb = await startSwitchboard(bin);
        t.after(() => sb.stop());
        const base = sb.baseUrl;
        const names = ["ann", "ben", "cat"].map((n) => `${n}${Date.now() % 100000}`);
        const users = [];
        for (const n of names) users.push(await register(base, n));
        const { room_id: roomId } = await api(users[0], "POST", "/createRoom", { preset: "public_chat" });
        for (const u of users.slice(1)) await api(u, "POST", `/join/${encodeURIComponent(roomId)}`, {});

        const pages = [];
        for (const u of users) {
            const openid = await api(u, "POST", `/user/${encodeURIComponent(u.user_id)}/openid/request_token`, {});
            const res = await fetch(`${base}/livekit/jwt/sfu/get`, {
                method: "POST", headers: { "content-type": "application/json" },
                body: JSON.stringify({ room: roomId, openid_token: openid, device_id: u.device_id }),
            });
            const tok = await res.json();
            assert.equal(res.status, 200, JSON.stringify(tok));
            assert.equal(tok.url, `ws://${sb.addrs.client}/livekit/sfu`);
            const ctx = await browser.newContext();
            const page = await ctx.newPage();
            const logs = [];
            page.on("console", (m) => logs.push(`${Date.now() % 1000000} ${m.text()}`));
            t.after(() => ctx.close());
            await page.goto(site.url + (process.env.LK_DEBUG ? "/?debug" : "/"));
            await page.waitForFunction(() => window.lk !== undefined);
            pages.push({ page, logs, identity: `${u.user_id}:${u.device_id}`, tok });
        }
        try {
            const t0 = Date.now();
            await Promise.all(pages.map((p) => p.page.evaluate(([url, jwt]) => window.lk.connect(url, jwt), [p.tok.url, p.tok.jwt])));
            t.diagnostic(`connected and published: ${Date.now() - t0} ms`);
            for (const p of pages) {
                const want = pages.filter((o) => o !== p).map((o) => o.identity);
                await waitUntil(`${p.identity} decodes video and receives audio of ${want}`, STEP_MS, async () => {
                    const st = await p.page.evaluate(() => window.lk.state());
                    if (process.env.LK_DEBUG) console.log(Date.now() - t0, p.identity.slice(0, 4), JSON.stringify(st));
                    // Decoded frames (a paused video, see README, has decoded its
                    // first ones) and audio packets flowing.
                    return want.every((id) => st[id] && st[id].video > 0 && st[id].width > 0 && st[id].audio > 5 && st[id].videoWidth > 0);
                }, 250);
            }
            t.diagnostic(`all decoding: ${Date.now() - t0} ms`);

            // A network change drops ben's signal connection: livekit-client
            // resumes it (reconnect=1 with its SID), the server keeps the
            // participant, and media keeps flowing both ways.
            const ben = pages[1], ann = pages[0];
            const sid = await ben.page.evaluate(() => window.lk.sid());
            const frames = async (p, from) => (await p.page.evaluate(() => window.lk.state()))[from.identity]?.video ?? 0;
            const [benFromAnn, annFromBen] = [await frames(ben, ann), await frames(ann, ben)];
            const seen = await Promise.all(pages.map((p) => p.page.evaluate(() => window.lk.events.length)));
            const since = async (i) => (await pages[i].page.evaluate(() => window.lk.events)).slice(seen[i]);
            await ben.page.evaluate(() => window.lk.dropSignal());
            await waitUntil(`${ben.identity} resumes`, STEP_MS, async () => (await since(1)).includes("reconnected"), 250);
            const benEvents = await since(1);
            assert.ok(benEvents.includes("signal-reconnecting") && !benEvents.includes("reconnecting"),
                `a resume, not a full reconnect: ${benEvents}`);
            assert.equal(await ben.page.evaluate(() => window.lk.sid()), sid, "same participant after the resume");
            await waitUntil("video both ways after the resume", STEP_MS, async () =>
                await frames(ben, ann) > benFromAnn + 10 && await frames(ann, ben) > annFromBen + 10, 250);
            for (const i of [0, 2]) {
                const ev = await since(i);
                assert.ok(!ev.includes(`left ${ben.identity}`), `${pages[i].identity} saw ${ben.identity} leave: ${ev}`);
            }
            t.diagnostic(`resumed: ${Date.now() - t0} ms`);
            await pages[2].page.evaluate(() => window.lk.leave());
            for (const p of pages.slice(0, 2)) {
                await waitUntil(`${p.identity} sees ${pages[2].identity} leave`, STEP_MS, async () => {
                    const st = await p.page.evaluate(() => window.lk.state());
                    return st[pages[2].identity] === undefined;
                }, 250);
            }
            t.diagnostic(`leave seen: ${Date.now() - t0} ms`);
            if (process.env.LK_DEBUG) for (const p of pages) console.log(`--- ${p.identity} console (t0 ${t0 % 1000000})\n${p.logs.join("\n")}`);
        } catch (err) {
            for (const p of pages) {
                console.log(`--- ${p.identity} console\n${tail(p.logs.join("\n"), 80)}`);
                console.log(`--- ${p.identity} video stats ${JSON.stringify(await p.page.evaluate(() => window.lk.debugStats()))}`);
            }
            for (const m of ["switchboard_sfu_layer_switches_total", "switchboard_sfu_keyframe_requests_total",
                "switchboard_sfu_dropped_packets_total", "switchboard_sfu_estimated_bandwidth_bps_sum",
                "switchboard_sfu_estimated_bandwidth_bps_count", "switchboard_sfu_forwarded_packets_total"]) {
                console.log(`--- metric ${m} ${await sb.metricSum(m).catch((e) => e.message)}`);
            }
            console.log(`--- server log\n${tail(sb.log(), 120)}`);
            throw err;
        }
    });
});
