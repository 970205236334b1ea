// The real Element Call UI on switchboard alone (issue 12's proof): the
// standalone web app from npm (@element-hq/element-call-embedded, its dist/
// served unchanged by a tiny static server with a config.json naming the dev
// server), two users signed in to a --dev switchboard open the same room in
// two Chromium pages with fake cameras, join the call and each decodes the
// other's video. Element Call finds the SFU on its own: MSC4143 discovery,
// the homeserver's OpenID token, the token service, LiveKit signalling.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { api, register } from "./matrix.mjs";
import { buildSwitchboard, repoRoot, startSwitchboard, waitUntil } from "./server.mjs";
import { browserArgs, chromiumPath, tail } from "./app.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "node_modules", "@element-hq", "element-call-embedded", "dist");
const artifacts = path.join(repoRoot, "test-artifacts", "browser");
const STEP_MS = 90_000;

let bin, browser;

before(async () => {
    await access(chromiumPath, constants.X_OK);
    await access(path.join(dist, "index.html"), constants.R_OK);
    ({ bin } = await buildSwitchboard());
    browser = await chromium.launch({ executablePath: chromiumPath, args: browserArgs, timeout: 60_000 });
});

after(async () => {
    await browser?.close();
});

const types = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
    ".woff2": "font/woff2", ".woff": "font/woff", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".wasm": "application/wasm",
};

/**
 * Serves Element Call's dist/ as a single-page app on 127.0.0.1 port 0: files
 * under assets/ by name (the app loads them relative to the page, so from
 * /room/assets/ too), /config.json from config, anything else index.html.
 */
async function serveElementCall(config) {
    const srv = createServer(async (req, res) => {
        const p = decodeURIComponent(new URL(req.url, "http://x").pathname);
        let file = path.join(dist, "index.html");
        const i = p.lastIndexOf("/assets/");
        if (p.endsWith("/config.json")) {
            res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(config));
            return;
        }
        if (i >= 0) file = path.join(dist, "assets", path.basename(p.slice(i + "/assets/".length)));
        try {
            if (!(await stat(file)).isFile()) throw new Error("not a file");
            res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
            res.end(await readFile(file));
        } catch {
            res.writeHead(404).end();
        }
    });
    await new Promise((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", resolve);
    });
    return {
        url: `http://127.0.0.1:${srv.address().port}`,
        close: () => new Promise((resolve) => {
            srv.closeAllConnections();
            srv.close(() => resolve());
        }),
    };
}

/** Records a page's console, failed requests and HTTP errors for the failure message. */
function watch(page, who, log) {
    page.on("console", (m) => log.push(`[${who} console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => log.push(`[${who} pageerror] ${e.message}`));
    page.on("requestfailed", (r) => log.push(`[${who} requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    page.on("response", (r) => {
        if (r.status() >= 400) log.push(`[${who} HTTP ${r.status()}] ${r.request().method()} ${r.url()}`);
    });
}

/**
 * The <video> elements of the page that show decoded frames: their sizes and
 * the data-id of their tile ("<user id>:<device id>:0" for a remote member).
 */
function decodedVideos(page) {
    return page.evaluate(() => [...document.querySelectorAll("video")]
        .filter((v) => v.videoWidth > 0 && v.readyState >= 2)
        .map((v) => ({ w: v.videoWidth, h: v.videoHeight, id: v.closest("[data-testid=videoTile]")?.getAttribute("data-id") ?? "" })));
}

/** How many frames the tile of userId's video has shown so far (0 if none). */
function remoteFrames(page, userId) {
    return page.evaluate((uid) => {
        const v = [...document.querySelectorAll("[data-testid=videoTile] video")]
            .find((e) => e.closest("[data-testid=videoTile]").getAttribute("data-id")?.startsWith(`${uid}:`));
        return v ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
    }, userId);
}

describe("Element Call 0.26.1 (the real UI from npm) on switchboard", () => {
    test("two users signed in join the same call and decode each other's video; a crashed page leaves", async (t) => {
        const sb = await startSwitchboard(bin);
        t.after(() => sb.stop());
        const base = sb.baseUrl;
        const stamp = Date.now() % 100000;
        const users = [await register(base, `ann${stamp}`), await register(base, `ben${stamp}`)];
        const serverName = users[0].user_id.slice(users[0].user_id.indexOf(":") + 1);
        const site = await serveElementCall({
            default_server_config: { "m.homeserver": { base_url: base, server_name: serverName } },
        });
        t.after(() => site.close());
        const { room_id: roomId } = await api(users[0], "POST", "/createRoom", { preset: "public_chat", name: "Switchboard call" });
        await api(users[1], "POST", `/join/${encodeURIComponent(roomId)}`, {});

        const log = [];
        const pages = [];
        try {
            for (const [i, u] of users.entries()) {
                const ctx = await browser.newContext({ viewport: { width: 640, height: 480 } });
                // Element Call's standalone session lives in localStorage
                // "matrix-auth-store" ({user_id, device_id, access_token}).
                await ctx.addInitScript((s) => {
                    if (!localStorage.getItem("matrix-auth-store")) localStorage.setItem("matrix-auth-store", JSON.stringify(s));
                }, { user_id: u.user_id, device_id: u.device_id, access_token: u.access_token, passwordlessUser: false });
                const page = await ctx.newPage();
                watch(page, i === 0 ? "ann" : "ben", log);
                pages.push(page);
                await page.goto(`${site.url}/room/#?roomId=${encodeURIComponent(roomId)}`);
            }
            for (const page of pages) {
                const join = page.getByRole("button", { name: /^join call$/i });
                await join.waitFor({ timeout: STEP_MS });
                await join.click();
            }
            // Each page decodes at least one remote video: its own local
            // preview plus the other's tile makes two decoded <video>s.
            for (const [i, page] of pages.entries()) {
                const other = users[1 - i].user_id;
                await waitUntil(`page ${i} decodes ${other}'s video`, STEP_MS, async () => (await decodedVideos(page)).some((v) => v.id.startsWith(`${other}:`)), 250);
            }
            // Frames keep arriving on the other's tile (not one frozen frame),
            // and the controls are shown (a click) for the screenshot.
            await mkdir(artifacts, { recursive: true });
            for (const [i, page] of pages.entries()) {
                const other = users[1 - i].user_id;
                const first = await remoteFrames(page, other);
                await waitUntil(`page ${i} keeps decoding ${other}`, STEP_MS, async () => (await remoteFrames(page, other)) >= first + 30, 250);
                // A click on the spotlight shows the header and footer.
                await page.mouse.click(320, 200);
                await page.mouse.move(330, 210);
                await page.screenshot({ path: path.join(artifacts, `element-call-${i === 0 ? "ann" : "ben"}.png`) });
            }
            await writeFile(path.join(artifacts, "element-call.log"), log.join("\n"));

            // Ben's tab dies (a renderer crash: no unload handler, no hangup,
            // no leave). Element Call scheduled his leave as an hour-long
            // delayed event (MSC4140) and handed it to the token service
            // (delay_id, MSC4195): the homeserver must send it as soon as the
            // SFU loses him, not an hour later, and Ann's call drop his tile.
            const [ann, ben] = users;
            const benMemberships = async () => {
                const state = await api(ann, "GET", `/rooms/${encodeURIComponent(roomId)}/state`);
                return state.filter((e) => e.type === "org.matrix.msc3401.call.member" && e.state_key.includes(ben.user_id));
            };
            assert.ok((await benMemberships()).some((e) => Object.keys(e.content).length > 0), "ben has no call membership before the crash");
            const crashed = new Promise((resolve) => pages[1].once("crash", resolve));
            const cdp = await pages[1].context().newCDPSession(pages[1]);
            cdp.send("Page.crash").catch(() => {}); // never answers: the page is gone
            await crashed;
            const t0 = Date.now();
            await waitUntil("ben's call membership is left after his page crashed", STEP_MS,
                async () => (await benMemberships()).every((e) => Object.keys(e.content).length === 0), 500);
            t.diagnostic(`membership left ${Date.now() - t0} ms after the crash`);
            await waitUntil("ann's call drops ben's tile", STEP_MS,
                async () => !(await decodedVideos(pages[0])).some((v) => v.id.startsWith(`${ben.user_id}:`)), 250);
        } catch (err) {
            await mkdir(artifacts, { recursive: true });
            for (const [i, page] of pages.entries()) {
                await page.screenshot({ path: path.join(artifacts, `element-call-failed-${i}.png`) }).catch(() => {});
            }
            err.message += `\n--- browser ---\n${tail(log.join("\n"), 300)}\n--- switchboard ---\n${tail(sb.log(), 100)}`;
            throw err;
        } finally {
            for (const page of pages) await page.context().close();
        }
    });
});
