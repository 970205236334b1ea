// MatrixRTC with LiveKit clients across two federated switchboard servers
// (issue 12: "the same with one participant on a second, federated
// Switchboard"). Alice and bob live on server A, carol on server B; the
// room is on A and carol joins it over federation. Each participant gets
// an OpenID token from their own homeserver (client-server spec, "OpenID")
// and posts it to A's token service ({livekit_service_url}/sfu/get,
// MSC4195); for carol A checks it with B through
// GET /_matrix/federation/v1/openid/userinfo (server-server spec,
// "OpenID"). All three connect the real livekit-client from npm to A's
// SFU in Chromium, publish a fake camera and microphone, and each decodes
// every other's video and receives their audio; carol leaves and the
// others see it. Without a browser: carol's confirmed token gets 403 and
// no JWT for a room of A she is not joined to.
//
// The servers are started as federation.test.mjs starts them
// (startFederating in server.mjs: self-signed federation certificates
// accepted, loopback allowed).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

import { api, register } from "./matrix.mjs";
import { buildSwitchboard, federationConfig, startFederating, startStaticServer, waitUntil } from "./server.mjs";
import { browserArgs, chromiumPath, tail } from "./app.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const STEP_MS = 60_000; // one step: a federated join, connect, decode, leave

let bin, tmp, site, browser, A, B;

before(async () => {
    await access(chromiumPath, constants.X_OK);
    ({ bin } = await buildSwitchboard());
    tmp = await mkdtemp(path.join(tmpdir(), "switchboard-livekit-fed-"));
    const js = path.join(tmp, "livekit.js");
    await esbuild.build({
        entryPoints: [path.join(here, "livekit-page.mjs")], outfile: js, bundle: true, format: "esm",
        platform: "browser", target: "chrome120", logLevel: "warning",
    });
    const html = path.join(tmp, "index.html");
    await writeFile(html, `<!doctype html><meta charset="utf-8"><title>livekit</title><script type="module" src="/livekit.js"></script>`);
    site = await startStaticServer({ "/": html, "/livekit.js": js });
    const cfg = await federationConfig(tmp);
    [A, B] = await Promise.all([startFederating(bin, cfg, "A"), startFederating(bin, cfg, "B")]);
    browser = await chromium.launch({ executablePath: chromiumPath, args: browserArgs, timeout: 60_000 });
});

after(async () => {
    await browser?.close();
    await site?.close();
    await Promise.all([A, B].filter(Boolean).map((s) => s.stop()));
    if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** An OpenID token from the user's own homeserver. */
function openID(user) {
    return api(user, "POST", `/user/${encodeURIComponent(user.user_id)}/openid/request_token`, {});
}

/** POSTs a token request to A's token service; returns { status, body }. */
async function sfuGet(roomId, openidToken, deviceId) {
    const res = await fetch(`${A.baseUrl}/livekit/jwt/sfu/get`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ room: roomId, openid_token: openidToken, device_id: deviceId }),
    });
    return { status: res.status, body: await res.json() };
}

/** Waits until A sees userId's membership of roomId as want. */
async function waitMembership(viewer, roomId, userId, want) {
    await waitUntil(`${userId} ${want} in ${roomId} as ${viewer.user_id} sees it`, STEP_MS, async () => {
        const res = await fetch(`${viewer.base}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.member/${encodeURIComponent(userId)}`, {
            headers: { authorization: `Bearer ${viewer.access_token}` },
        });
        if (res.status !== 200) return false;
        return (await res.json()).membership === want;
    }, 250);
}

const suffix = Date.now() % 100000;

describe("MatrixRTC with livekit-client across two federated switchboard servers", () => {
    test("a user of B gets no token from A for a room of A she is not joined to (403, no JWT)", async () => {
        const owner = await register(A.baseUrl, `owner${suffix}`);
        const dan = await register(B.baseUrl, `dan${suffix}`);
        assert.ok(dan.user_id.endsWith(`:${B.serverName}`), dan.user_id);
        const { room_id: roomId } = await api(owner, "POST", "/createRoom", { preset: "public_chat" });
        const tok = await openID(dan);
        assert.equal(tok.matrix_server_name, B.serverName);
        const got = await sfuGet(roomId, tok, dan.device_id);
        // 403, not 401: A confirmed the token with B over federation and
        // then refused because dan is not in the room.
        assert.equal(got.status, 403, JSON.stringify(got.body));
        assert.equal(got.body.errcode, "M_FORBIDDEN");
        assert.equal(got.body.jwt, undefined);
        // A forged token of B's user is refused by B, so A answers 401.
        const forged = await sfuGet(roomId, { ...tok, access_token: `${tok.access_token}x` }, dan.device_id);
        assert.equal(forged.status, 401, JSON.stringify(forged.body));
        assert.equal(forged.body.jwt, undefined);
    });

    test("alice and bob on A, carol on B: tokens from A's /sfu/get, all see and hear each other; carol leaves", async (t) => {
        const alice = await register(A.baseUrl, `alice${suffix}`);
        const bob = await register(A.baseUrl, `bob${suffix}`);
        const carol = await register(B.baseUrl, `carol${suffix}`);
        const { room_id: roomId } = await api(alice, "POST", "/createRoom", { preset: "public_chat" });
        assert.ok(roomId.endsWith(`:${A.serverName}`), roomId);
        await api(bob, "POST", `/join/${encodeURIComponent(roomId)}`, {});
        // Carol is invited (the invite crosses to B), then joins over federation.
        await api(alice, "POST", `/rooms/${encodeURIComponent(roomId)}/invite`, { user_id: carol.user_id });
        const invited = await openID(carol);
        const early = await sfuGet(roomId, invited, carol.device_id);
        assert.equal(early.status, 403, `carol only invited: ${JSON.stringify(early.body)}`);
        await waitUntil("carol's join over federation", STEP_MS, async () => {
            const res = await fetch(`${carol.base}/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {
                method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${carol.access_token}` },
                body: "{}",
            });
            return res.status === 200;
        }, 500);
        await waitMembership(alice, roomId, carol.user_id, "join");

        const pages = [];
        for (const u of [alice, bob, carol]) {
            const got = await sfuGet(roomId, await openID(u), u.device_id);
            assert.equal(got.status, 200, `${u.user_id}: ${JSON.stringify(got.body)}`);
            assert.equal(got.body.url, `ws://${A.addrs.client}/livekit/sfu`);
            const ctx = await browser.newContext();
            const page = await ctx.newPage();
            const logs = [];
            page.on("console", (m) => logs.push(`${Date.now() % 1000000} ${m.text()}`));
            t.after(() => ctx.close());
            await page.goto(site.url);
            await page.waitForFunction(() => window.lk !== undefined);
            pages.push({ page, logs, identity: `${u.user_id}:${u.device_id}`, tok: got.body });
        }
        const t0 = Date.now();
        try {
            await Promise.all(pages.map((p) => p.page.evaluate(([url, jwt]) => window.lk.connect(url, jwt), [p.tok.url, p.tok.jwt])));
            t.diagnostic(`connected and published: ${Date.now() - t0} ms`);
            for (const p of pages) {
                const want = pages.filter((o) => o !== p).map((o) => o.identity);
                await waitUntil(`${p.identity} decodes video and receives audio of ${want}`, STEP_MS, async () => {
                    const st = await p.page.evaluate(() => window.lk.state());
                    return want.every((id) => st[id] && st[id].video > 0 && st[id].width > 0 && st[id].audio > 5 && st[id].videoWidth > 0);
                }, 250);
            }
            t.diagnostic(`all decoding: ${Date.now() - t0} ms`);
            const gone = pages[2];
            await gone.page.evaluate(() => window.lk.leave());
            for (const p of pages.slice(0, 2)) {
                await waitUntil(`${p.identity} sees ${gone.identity} leave`, STEP_MS, async () => {
                    const st = await p.page.evaluate(() => window.lk.state());
                    return st[gone.identity] === undefined;
                }, 250);
            }
            t.diagnostic(`leave seen: ${Date.now() - t0} ms`);
        } catch (err) {
            for (const p of pages) {
                console.log(`--- ${p.identity} console\n${tail(p.logs.join("\n"), 80)}`);
                console.log(`--- ${p.identity} video stats ${JSON.stringify(await p.page.evaluate(() => window.lk.debugStats()).catch((e) => e.message))}`);
            }
            for (const s of [A, B]) console.log(`--- server ${s.label} (${s.serverName}) log\n${tail(s.log(), 120)}`);
            throw err;
        }
    });
});
