// Switchboard's own browser client (web/static, served by the binary at /)
// in Debian's Chromium with fake camera and microphone, driven through its
// forms and buttons by playwright-core against a real `switchboard serve
// --dev`: sign-in errors, registration, rooms, invites and messages; a 1:1
// video call between two of our pages (ring, decline, accept, mute, hang
// up); our page calling matrix-js-sdk's MatrixCall; and a group call of
// three through the server's SFU focus. Screenshots of each step go to
// test-artifacts/browser/.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { bundle } from "./build.mjs";
import { buildSwitchboard, startStaticServer, startSwitchboard, waitUntil } from "./server.mjs";
import {
    PASSWORD,
    browserArgs,
    chromiumPath,
    desktop,
    localpart,
    openApp,
    openRoom,
    phone,
    registerViaForm,
    shot,
    tiles,
    toneWav,
    waitRemoteVideo,
    withServer,
} from "./app.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

// Deadlines (generous for a shared 2-core machine; none is a sleep).
const STEP_MS = 20_000;
const MEDIA_MS = 45_000;

let bin;
let binDir;
let wavDir;
let browser;
let denying;

const relayArgs = ["--turn-allow-cidrs", "127.0.0.1/32", "--turn-relay-ip", "127.0.0.1"];
const start = () => startSwitchboard(bin, { extraArgs: relayArgs });

before(async () => {
    try {
        await access(chromiumPath, constants.X_OK);
    } catch {
        throw new Error(`no Chromium at ${chromiumPath}: apt-get install -y chromium, or set CHROMIUM_BIN`);
    }
    ({ bin, dir: binDir } = await buildSwitchboard());
    wavDir = await mkdtemp(path.join(tmpdir(), "switchboard-browser-wav-"));
    const wav = path.join(wavDir, "tone.wav");
    await writeFile(wav, toneWav());
    // The second browser grants no camera or microphone (no fake
    // permission UI): the no-permission check runs in it.
    [browser, denying] = await Promise.all([
        chromium.launch({ executablePath: chromiumPath, args: [...browserArgs, `--use-file-for-fake-audio-capture=${wav}`], timeout: 60_000 }),
        chromium.launch({ executablePath: chromiumPath, args: browserArgs.filter((x) => x !== "--use-fake-ui-for-media-stream"), timeout: 60_000 }),
    ]);
});

after(async () => {
    await browser?.close();
    await denying?.close();
    if (binDir) await rm(binDir, { recursive: true, force: true });
    if (wavDir) await rm(wavDir, { recursive: true, force: true });
});

/** The text of p's visible timeline. */
function timelineText(p) {
    return p.page.locator("#timeline").innerText();
}

/** A creates a room called name inviting B (by user ID); B accepts through the invite banner. */
async function roomWith(a, b, name) {
    await a.page.fill("#new-room-name", name);
    await a.page.fill("#new-room-invite", b.userId);
    await a.page.click("#create-room");
    await a.page.locator("#room-name", { hasText: name }).waitFor({ timeout: STEP_MS });
    await openRoom(b, name);
    await b.page.locator("#invite-banner").waitFor({ state: "visible", timeout: STEP_MS });
    await b.page.click("#accept-invite");
    await b.page.locator("#composer").waitFor({ state: "visible", timeout: STEP_MS });
    // A sees B join (the 1:1 call buttons appear in a two-person room).
    await a.page.locator("#room-sub", { hasText: "2 members" }).waitFor({ timeout: STEP_MS });
}

async function send(p, text) {
    await p.page.fill("#message", text);
    await p.page.press("#message", "Enter");
}

/** callInfo() of p's 1:1 call. */
function callInfo(p) {
    return p.page.evaluate(() => window.switchboard.callInfo());
}

/** Waits for framesDecoded (getStats inbound-rtp) of p's 1:1 call to be > 0 and then rise. */
async function framesRising1to1(p) {
    const first = await waitUntil(`${p.label}: framesDecoded > 0`, MEDIA_MS, async () => {
        const i = await callInfo(p);
        return i?.stats?.framesDecoded > 0 ? i.stats.framesDecoded : undefined;
    });
    return waitUntil(`${p.label}: framesDecoded rising past ${first}`, MEDIA_MS, async () => {
        const i = await callInfo(p);
        return i?.stats?.framesDecoded > first ? i.stats : undefined;
    });
}

describe("Switchboard web client", () => {
    test("sign-in errors in words, register, create room, invite, join, send and receive messages (desktop and phone widths)", async (t) => {
        await withServer("web-chat", start, async (server, pages, log) => {
            const started = Date.now();
            const a = await openApp(browser, server, "A", log, { viewport: desktop });
            const b = await openApp(browser, server, "B", log, { viewport: phone });
            pages.push(a, b);
            assert.equal(await a.page.inputValue("#server"), server.baseUrl, "the server field defaults to the page's origin");
            await shot(a, "web-chat-1-signin");

            await registerViaForm(a, localpart("alice"));

            // Wrong password, then an unreachable server: said in words.
            await b.page.fill("#username", a.userId.slice(1).split(":")[0]);
            await b.page.fill("#password", "not the password");
            await b.page.click("#signin");
            await b.page.locator("#login-error", { hasText: "Wrong username or password." }).waitFor({ timeout: STEP_MS });
            await shot(b, "web-chat-2-wrong-password");
            await b.page.fill("#server", "http://127.0.0.1:9");
            await b.page.click("#signin");
            await b.page.locator("#login-error", { hasText: "Cannot reach the server" }).waitFor({ timeout: STEP_MS });
            await shot(b, "web-chat-3-unreachable");
            await b.page.fill("#server", server.baseUrl);
            await registerViaForm(b, localpart("bob"));

            await roomWith(a, b, "Planning");
            await shot(b, "web-chat-4-joined");

            await send(a, "hello from alice");
            await b.page.locator("#timeline li", { hasText: "hello from alice" }).waitFor({ timeout: STEP_MS });
            await send(b, "hi alice, bob here");
            await a.page.locator("#timeline li", { hasText: "bob here" }).waitFor({ timeout: STEP_MS });
            assert.match(await timelineText(a), /hello from alice[\s\S]*bob here/, "A's timeline is in order");
            await shot(a, "web-chat-5-messages");
            await shot(b, "web-chat-5-messages");

            // Join by room ID through the join form: a third room, B invited,
            // joined by typing its ID rather than through the banner.
            await a.page.fill("#new-room-name", "Side room");
            await a.page.fill("#new-room-invite", b.userId);
            await a.page.click("#create-room");
            await a.page.locator("#room-name", { hasText: "Side room" }).waitFor({ timeout: STEP_MS });
            const roomId = await waitUntil("the side room's ID", STEP_MS, () =>
                a.page.evaluate(() => document.querySelector('#room-list button[aria-current="true"]')?.dataset.roomId),
            );
            // On a phone the room list and the room take turns: back to the list.
            await b.page.click("#back");
            await b.page.fill("#join-target", roomId);
            await b.page.click("#join-room");
            await b.page.locator("#room-name", { hasText: "Side room" }).waitFor({ timeout: STEP_MS });
            await a.page.locator("#room-sub", { hasText: "2 members" }).waitFor({ timeout: STEP_MS });
            const chatDone = Date.now();
            t.diagnostic(`A ${a.userId}, B ${b.userId}, side room ${roomId}`);

            // No camera permission: a browser that does not grant it says
            // so in words when a call starts.
            {
                const d = await openApp(denying, server, "D", log);
                pages.push(d);
                await registerViaForm(d, localpart("dora"));
                await d.page.fill("#new-room-name", "Alone");
                await d.page.click("#create-room");
                await d.page.locator("#room-name", { hasText: "Alone" }).waitFor({ timeout: STEP_MS });
                await d.page.click("#group-call");
                await d.page.locator("#toast", { hasText: "No permission to use your camera or microphone" }).waitFor({ timeout: STEP_MS });
                await d.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS });
                await shot(d, "web-chat-6-no-camera-permission");
                t.diagnostic(`chat steps ${chatDone - started} ms; no-permission check ${Date.now() - chatDone} ms`);
            }
        });
    });

    test("1:1 video call between two Switchboard pages: decline, then ring, accept, both decode video, mute shows, hang up", async (t) => {
        await withServer("web-1to1", start, async (server, pages, log) => {
            const a = await openApp(browser, server, "A", log);
            const b = await openApp(browser, server, "B", log, { viewport: phone });
            pages.push(a, b);
            await registerViaForm(a, localpart("carol"));
            await registerViaForm(b, localpart("dave"));
            await roomWith(a, b, "Carol and Dave");

            // First call: declined.
            await a.page.click("#video-call");
            await b.page.locator("#incoming").waitFor({ state: "visible", timeout: STEP_MS });
            await shot(b, "web-1to1-1-ringing");
            await shot(a, "web-1to1-1-ringing");
            await b.page.click("#reject-call");
            await a.page.locator("#toast", { hasText: "declined" }).waitFor({ timeout: STEP_MS });
            await a.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS });

            // Second call: accepted.
            const placed = Date.now();
            await a.page.click("#video-call");
            await b.page.locator("#incoming").waitFor({ state: "visible", timeout: STEP_MS });
            await b.page.click("#accept-video");
            await Promise.all([a, b].map((p) => waitRemoteVideo(p, "1:1", MEDIA_MS)));
            const [sa, sb] = await Promise.all([framesRising1to1(a), framesRising1to1(b)]);
            const connectedMs = Date.now() - placed;
            assert.ok(sa.relay && sb.relay, "relay-only setting: the selected pairs use our TURN relay");
            await shot(a, "web-1to1-2-connected");
            await shot(b, "web-1to1-2-connected");

            // A mutes: B's remote tile shows it (m.call.sdp_stream_metadata_changed).
            await a.page.click("#toggle-mic");
            await waitUntil("B sees A muted", STEP_MS, async () => (await tiles(b)).some((x) => !x.local && x.audioMuted));
            await shot(b, "web-1to1-3-remote-muted");

            await a.page.click("#hangup");
            await b.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS });
            await a.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS });
            assert.equal(await callInfo(b), null, "B's call ended");
            await shot(b, "web-1to1-4-ended");
            t.diagnostic(`placed → both decoding ${connectedMs} ms; framesDecoded A ${sa.framesDecoded}, B ${sb.framesDecoded}`);
        });
    });

    test("interop: our page calls a matrix-js-sdk MatrixCall page, which answers; both decode video; our hangup ends its call; then it calls us", async (t) => {
        const bundleDir = await mkdtemp(path.join(tmpdir(), "switchboard-browser-page-"));
        const js = await bundle(bundleDir);
        const site = await startStaticServer({
            "/": path.join(here, "page", "index.html"),
            "/client.js": js,
            "/client.js.map": `${js}.map`,
        });
        try {
            await withServer("web-interop", start, async (server, pages, log) => {
                const a = await openApp(browser, server, "A", log);
                pages.push(a);
                const jctx = await browser.newContext({ viewport: { width: 720, height: 420 } });
                const j = { label: "J", context: jctx, page: await jctx.newPage() };
                pages.push(j);
                j.page.on("console", (m) => log.push(`[J] ${m.type()}: ${m.text()}`));
                await j.page.goto(`${site.url}/`);
                await j.page.waitForFunction(() => window.sbReady === true, null, { timeout: STEP_MS });
                const ju = await j.page.evaluate((opts) => window.sb.start(opts), {
                    baseUrl: server.baseUrl,
                    username: localpart("sdk"),
                    password: PASSWORD,
                    forceTURN: true,
                });
                await registerViaForm(a, localpart("erin"));

                await a.page.fill("#new-room-name", "Interop");
                await a.page.fill("#new-room-invite", ju.userId);
                await a.page.click("#create-room");
                await a.page.locator("#room-name", { hasText: "Interop" }).waitFor({ timeout: STEP_MS });
                const roomId = await a.page.evaluate(() => document.querySelector('#room-list button[aria-current="true"]')?.dataset.roomId);
                await waitUntil("the SDK sees the invite", STEP_MS, () => j.page.evaluate((r) => window.sb.membership(r) === "invite", roomId));
                await j.page.evaluate((r) => window.sb.join(r), roomId);
                await a.page.locator("#room-sub", { hasText: "2 members" }).waitFor({ timeout: STEP_MS });

                await a.page.click("#video-call");
                await waitUntil("the SDK rings", STEP_MS, async () => {
                    const i = await j.page.evaluate(() => window.sb.info());
                    return i.incoming > 0 && i.state === "ringing";
                });
                await j.page.evaluate(() => window.sb.answer());
                await waitUntil("the SDK's call connected", MEDIA_MS, async () => (await j.page.evaluate(() => window.sb.info())).state === "connected");
                const js1 = await waitUntil("the SDK decodes video", MEDIA_MS, async () => {
                    const s = await j.page.evaluate(() => window.sb.stats());
                    return s?.framesDecoded > 0 ? s : undefined;
                });
                await waitUntil("the SDK's framesDecoded rising", MEDIA_MS, async () => (await j.page.evaluate(() => window.sb.stats()))?.framesDecoded > js1.framesDecoded);
                await waitRemoteVideo(a, "interop", MEDIA_MS);
                const sa = await framesRising1to1(a);
                await shot(a, "web-interop-1-connected");
                await shot(j, "web-interop-1-connected");

                await a.page.click("#hangup");
                const ji = await waitUntil("the SDK's call ended by our hangup", STEP_MS, async () => {
                    const i = await j.page.evaluate(() => window.sb.info());
                    return i.state === "ended" && i.hangup ? i : undefined;
                });
                assert.deepEqual(ji.hangup, { party: "remote", reason: "user_hangup" });
                await a.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS });

                // And the other way: the SDK calls us, we accept, it hangs up.
                await j.page.evaluate((r) => window.sb.placeVideoCall(r), roomId);
                await a.page.locator("#incoming").waitFor({ state: "visible", timeout: STEP_MS });
                await a.page.click("#accept-video");
                await waitRemoteVideo(a, "SDK → us", MEDIA_MS);
                const sb = await framesRising1to1(a);
                await waitUntil("the SDK's second call connected", MEDIA_MS, async () => (await j.page.evaluate(() => window.sb.info())).state === "connected");
                await shot(a, "web-interop-2-sdk-called-us");
                await j.page.evaluate(() => window.sb.hangup());
                await a.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS });
                t.diagnostic(`SDK states ${ji.states.join(" → ")}; our framesDecoded ${sa.framesDecoded} (we called), ${sb.framesDecoded} (SDK called)`);
            });
        } finally {
            await site.close();
            await rm(bundleDir, { recursive: true, force: true });
        }
    });
    test("group call through the SFU focus: three people each see two remote videos, a mute shows on the others' grids, a leave shrinks them; ICE restart and fresh join recover", async (t) => {
        await withServer("web-group", start, async (server, pages, log) => {
            // Three pages encode simulcast and decode two streams each: SD
            // cameras keep that within a shared 2-core machine.
            const a = await openApp(browser, server, "A", log, { quality: "sd" });
            const b = await openApp(browser, server, "B", log, { quality: "sd" });
            const c = await openApp(browser, server, "C", log, { viewport: phone, quality: "sd" });
            pages.push(a, b, c);
            for (const [p, n] of [[a, "gina"], [b, "hank"], [c, "iris"]]) await registerViaForm(p, localpart(n));
            await a.page.fill("#new-room-name", "Team");
            await a.page.fill("#new-room-invite", `${b.userId} ${c.userId}`);
            await a.page.click("#create-room");
            await a.page.locator("#room-name", { hasText: "Team" }).waitFor({ timeout: STEP_MS });
            for (const p of [b, c]) {
                await openRoom(p, "Team");
                await p.page.click("#accept-invite");
                await p.page.locator("#composer").waitFor({ state: "visible", timeout: STEP_MS });
            }
            await a.page.locator("#room-sub", { hasText: "3 members" }).waitFor({ timeout: STEP_MS });

            const started = Date.now();
            await a.page.click("#group-call");
            await a.page.locator("#call-view").waitFor({ state: "visible", timeout: STEP_MS });
            for (const p of [b, c]) {
                // The others see the call in the room and join it.
                await p.page.locator("#group-call", { hasText: "Join call" }).waitFor({ timeout: STEP_MS });
                await p.page.click("#group-call");
            }
            const all = [a, b, c];
            const local = (p) => p.userId.slice(1).split(":")[0];
            await Promise.all(all.map((p) => waitRemoteVideo(p, "group of three", MEDIA_MS, 2)));
            // framesDecoded (getStats) of both remote streams rises on every page.
            for (const p of all) {
                const first = await waitUntil(`${p.label}: two remote streams decoding`, MEDIA_MS, async () => {
                    const i = await p.page.evaluate(() => window.switchboard.groupInfo());
                    const s = Object.values(i?.stats ?? {}).filter((x) => x.framesDecoded > 0);
                    return s.length >= 2 ? i.stats : undefined;
                });
                await waitUntil(`${p.label}: framesDecoded rising on both`, MEDIA_MS, async () => {
                    const i = await p.page.evaluate(() => window.switchboard.groupInfo());
                    return Object.entries(first).every(([k, v]) => (i?.stats?.[k]?.framesDecoded ?? 0) > v.framesDecoded);
                });
                const names = (await tiles(p)).filter((x) => !x.local).map((x) => x.name).sort();
                const want = all.filter((o) => o !== p).map(local).sort();
                assert.deepEqual(names, want, `${p.label}: tile names`);
            }
            const joinedMs = Date.now() - started;
            // Simulcast: the browser sends more than one layer of its camera.
            const layers = await waitUntil("A sends two or more simulcast layers", STEP_MS, async () => {
                const l = await a.page.evaluate(() => window.switchboard.groupInfo().then((i) => i.sendLayers));
                return l.length >= 2 ? l : undefined;
            });
            for (const p of all) await shot(p, "web-group-1-three");

            // Active speaker: with A and B muted, C (a loud tone) is the one
            // speaking, and A's and B's grids highlight C's tile.
            await a.page.click("#toggle-mic");
            await b.page.click("#toggle-mic");
            for (const p of [a, b]) {
                await waitUntil(`${p.label}: C's tile highlighted as the speaker`, STEP_MS, async () =>
                    (await tiles(p)).some((x) => x.name === local(c) && x.speaking),
                );
            }
            await shot(a, "web-group-2-c-speaking");
            await a.page.click("#toggle-mic");
            await b.page.click("#toggle-mic");

            // C mutes the microphone: A and B see it on C's tile.
            await c.page.click("#toggle-mic");
            for (const p of [a, b]) {
                await waitUntil(`${p.label}: C's tile shows the mute`, STEP_MS, async () =>
                    (await tiles(p)).some((x) => x.name === local(c) && x.audioMuted),
                );
            }
            await shot(a, "web-group-3-c-muted");
            await shot(c, "web-group-3-c-muted");

            // C leaves: A's and B's grids shrink to one remote tile.
            await c.page.click("#hangup");
            await c.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS });
            for (const p of [a, b]) {
                await waitUntil(`${p.label}: grid shrinks after C left`, STEP_MS, async () => {
                    const r = (await tiles(p)).filter((x) => !x.local);
                    return r.length === 1 && r[0].name === local(p === a ? b : a);
                });
            }
            await shot(a, "web-group-4-c-left");

            // Reconnecting. A restarts ICE on a working connection (offer to
            // the focus by to-device m.call.negotiate): media keeps flowing.
            const groupInfo = (p) => p.page.evaluate(() => window.switchboard.groupInfo());
            assert.ok(await a.page.evaluate(() => window.switchboard.injectGroupFault("ice-restart")));
            const ia = await waitUntil("A: ICE restart done", MEDIA_MS, async () => {
                const i = await groupInfo(a);
                return i.iceRestarts === 1 && i.reconnects === 1 && i.state === "connected" ? i : undefined;
            });
            await waitRemoteVideo(b, "after A's ICE restart", MEDIA_MS);
            // B loses its connection without a word to the focus: it joins
            // afresh (new PeerConnection, new invite) and says so on screen.
            assert.ok(await b.page.evaluate(() => window.switchboard.injectGroupFault("drop")));
            await b.page.locator("#call-status", { hasText: "rejoining" }).waitFor({ timeout: STEP_MS }).catch(() => {});
            const ib = await waitUntil("B: rejoined", MEDIA_MS, async () => {
                const i = await groupInfo(b);
                return i.rejoins === 1 && i.reconnects === 1 && i.state === "connected" ? i : undefined;
            });
            await shot(b, "web-group-5-b-rejoined");
            await Promise.all([a, b].map((p) => waitRemoteVideo(p, "after B's fresh join", MEDIA_MS)));
            for (const p of [a, b]) assert.equal((await tiles(p)).filter((x) => !x.local).length, 1, `${p.label}: one remote tile after the rejoin`);
            await shot(a, "web-group-6-after-rejoin");
            t.diagnostic(`A's status after its ICE restart "${ia.status}"; B's after its fresh join "${ib.status}"`);

            await a.page.click("#hangup");
            await b.page.click("#hangup");
            await Promise.all([a, b].map((p) => p.page.locator("#call-view").waitFor({ state: "hidden", timeout: STEP_MS })));
            t.diagnostic(`group of three: first click → all six remote videos decoding ${joinedMs} ms; A's simulcast layers ${JSON.stringify(layers)}`);
        });
    });
});
