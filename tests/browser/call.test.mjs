// A 1:1 Matrix video call between two Chromium pages through Switchboard's
// own TURN relay, with a client nobody here wrote: matrix-js-sdk's calling
// stack (MatrixCall, CallEventHandler), bundled with esbuild and driven by
// playwright-core in Debian's chromium with fake camera and microphone.
//
// Both clients set forceTURN, so the SDK builds its RTCPeerConnection with
// iceTransportPolicy "relay" and the TURN servers from
// GET /_matrix/client/v3/voip/turnServer: the only way media can flow is
// through the relay. The first case proves it does (video decodes on both
// pages over a relay candidate pair, the relay's counters move, the hangup
// reaches the callee); the second proves that the relay's deny table, with
// loopback no longer allowed, is what stands between a call and success.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { bundle } from "./build.mjs";
import { buildSwitchboard, repoRoot, startStaticServer, startSwitchboard, waitUntil } from "./server.mjs";
import { browserArgs, localpart, tail } from "./app.mjs";
import { assertRelayOnly, assertRelayPairs, openSdkPage, stats, waitCall, waitDecoding } from "./sdkpage.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const artifacts = path.join(repoRoot, "test-artifacts");

// Deadlines (generous for a shared 2-core machine; none is a sleep).
const STEP_MS = 20_000; // one signalling step: sync, invite, join, ring
const CONNECT_MS = 45_000; // answer → both calls connected
const MEDIA_MS = 30_000; // connected → video frames decoded and rising
const DENIED_MS = 60_000; // the denied call's ICE gives up


let bin;
let binDir;
let bundleDir;
let site;
let browser;



/**
 * Opens the test page in a fresh browser context and records its console
 * output and uncaught errors into log (shared by the pages of a test, in
 * arrival order).
 */
function openPage(label, log) {
    return openSdkPage(browser, site.url, label, log, STEP_MS);
}

/**
 * Runs body with a fresh server (extraArgs) and two pages, A and B. On
 * failure the server's log and both pages' console output are written to
 * test-artifacts/ and their tails appended to the error.
 */
async function withCall(name, extraArgs, body) {
    const server = await startSwitchboard(bin, { extraArgs });
    const pages = [];
    const log = [];
    try {
        pages.push(await openPage("A", log), await openPage("B", log));
        await body(server, pages[0], pages[1]);
    } catch (err) {
        const serverLog = server.log();
        const consoleLog = log.join("\n");
        await mkdir(artifacts, { recursive: true });
        await writeFile(path.join(artifacts, `browser-${name}-server.log`), serverLog);
        await writeFile(path.join(artifacts, `browser-${name}-console.log`), consoleLog);
        for (const p of pages) {
            await p.page
                .screenshot({ path: path.join(artifacts, `browser-${name}-${p.label}-failed.png`), timeout: 5000 })
                .catch(() => {});
        }
        err.message +=
            `\n--- switchboard log (test "${name}" failed; full copy in test-artifacts/) ---\n${tail(serverLog, 300)}` +
            `\n--- page console output ---\n${tail(consoleLog, 300)}`;
        throw err;
    } finally {
        for (const p of pages) await p.context.close().catch(() => {});
        await server.stop();
    }
}

/**
 * Registers both users, checks that each got our TURN URIs from
 * /voip/turnServer, makes a DM room A → B with B joined as both see it,
 * places A's video call and has B answer it. Returns the room id.
 */
async function setUpCall(server, a, b) {
    const baseUrl = server.baseUrl;
    const password = "correct horse battery staple";
    const [ua, ub] = await Promise.all(
        [a, b].map((p) =>
            p.page.evaluate((opts) => window.sb.start(opts), {
                baseUrl,
                username: localpart(`call-${p.label.toLowerCase()}`),
                password,
                forceTURN: true,
            }),
        ),
    );
    assert.ok(ua.supportsVoip && ub.supportsVoip, "matrix-js-sdk says this Chromium cannot do VoIP");

    // The SDK fetches /voip/turnServer in startClient (checkTurnServers);
    // the URIs must name the TURN ports the server actually bound.
    const want = [`turn:${server.addrs.turn_udp}?transport=udp`, `turn:${server.addrs.turn_tcp}?transport=tcp`];
    for (const p of [a, b]) {
        const i = await waitCall(p, "TURN servers from /voip/turnServer", STEP_MS, (i) => i.turnServers.length > 0 || i.turnError);
        assert.equal(i.turnError, undefined, `${p.label}: /voip/turnServer failed`);
        const urls = i.turnServers.flatMap((s) => s.urls);
        for (const u of want) {
            assert.ok(urls.includes(u), `${p.label}: /voip/turnServer URIs ${JSON.stringify(urls)} lack ${u} (bound: ${JSON.stringify(server.addrs)})`);
        }
        assert.match(i.turnServers[0].username, /^\d+:@/, `${p.label}: TURN REST username is expiry:user`);
    }

    const roomId = await a.page.evaluate((uid) => window.sb.createDirectRoom(uid), ub.userId);
    await waitUntil("B sees the invite", STEP_MS, () => b.page.evaluate((r) => window.sb.membership(r) === "invite", roomId));
    await b.page.evaluate((r) => window.sb.join(r), roomId);
    await waitUntil("A sees B joined", STEP_MS, () =>
        a.page.evaluate(([r, u]) => window.sb.membership(r, u) === "join", [roomId, ub.userId]),
    );

    const placedAt = Date.now();
    await a.page.evaluate((r) => window.sb.placeVideoCall(r), roomId);
    await waitCall(b, "the incoming call ringing", STEP_MS, (i) => i.incoming > 0 && i.state === "ringing");
    const answeredAt = Date.now();
    await b.page.evaluate(() => window.sb.answer());
    return { roomId, placedAt, answeredAt };
}

before(async () => {
    try {
        await access(chromiumPath, constants.X_OK);
    } catch {
        throw new Error(
            `no Chromium at ${chromiumPath}: install Debian's package "chromium" (apt-get install -y chromium), ` +
                "or set CHROMIUM_BIN; browser downloads by test tools do not work here",
        );
    }
    ({ bin, dir: binDir } = await buildSwitchboard());
    bundleDir = await mkdtemp(path.join(tmpdir(), "switchboard-browser-page-"));
    const js = await bundle(bundleDir);
    site = await startStaticServer({
        "/": path.join(here, "page", "index.html"),
        "/client.js": js,
        "/client.js.map": `${js}.map`,
    });
    browser = await chromium.launch({ executablePath: chromiumPath, args: browserArgs, timeout: 60_000 });
});

after(async () => {
    await browser?.close();
    await site?.close();
    if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
    if (binDir) await rm(binDir, { recursive: true, force: true });
});

describe("1:1 Matrix video call in Chromium through switchboard's TURN relay", () => {
    test("relay-only call connects, video decodes both ways over relay candidates, hangup reaches the callee", async (t) => {
        // The relay must be allowed to reach the pages' relayed addresses on
        // 127.0.0.1; --dev allows loopback already, this says so explicitly.
        await withCall("call", ["--turn-allow-cidrs", "127.0.0.1/32", "--turn-relay-ip", "127.0.0.1"], async (server, a, b) => {
            const { placedAt, answeredAt } = await setUpCall(server, a, b);
            await Promise.all([a, b].map((p) => waitCall(p, "call connected", CONNECT_MS, (i) => i.state === "connected")));
            const connectedAt = Date.now();

            // framesDecoded must be non-zero and then rise on both pages.
            const { firstFrames, decoding } = await waitDecoding([a, b], MEDIA_MS);

            const framesAt = Date.now();

            // Relay only: the selected pair's local candidate is a relayed
            // address from our TURN server, and so is the remote one.
            for (const p of [a, b]) {
                const pair = assertRelayOnly(p, decoding[p.label], server.addrs);
                assert.equal(pair.local.address, "127.0.0.1", `${p.label}: relayed address is not --turn-relay-ip`);
            }
            assertRelayPairs(a, decoding[a.label], b, decoding[b.label]);

            // The relay's own counters saw the media, to peers and to clients.
            const relayed = {};
            for (const dir of ["to_peer", "to_client"]) {
                relayed[dir] = await server.metricSum("switchboard_turn_relayed_bytes_total", { direction: dir });
                assert.ok(relayed[dir] > 0, `switchboard_turn_relayed_bytes_total{direction="${dir}"} is 0 although video decoded`);
            }

            await mkdir(artifacts, { recursive: true });
            for (const p of [a, b]) {
                await p.page.screenshot({ path: path.join(artifacts, `browser-call-${p.label}-connected.png`) });
            }

            await a.page.evaluate(() => window.sb.hangup());
            const ia = await waitCall(a, "own call ended (CallEvent.Hangup)", STEP_MS, (i) => i.state === "ended" && i.hangup, { endedIsFailure: false });
            assert.deepEqual(ia.hangup, { party: "local", reason: "user_hangup" }, "A's hangup");
            const ib = await waitCall(b, "hangup from A (CallEvent.Hangup)", STEP_MS, (i) => i.state === "ended" && i.hangup, { endedIsFailure: false });
            assert.deepEqual(ib.hangup, { party: "remote", reason: "user_hangup" }, `B's call ended otherwise: ${JSON.stringify(ib)}`);
            assert.ok(ib.states.includes("connected"), `B's states: ${ib.states}`);

            const pa = decoding.A.selectedPair;
            t.diagnostic(
                `invite → connected ${connectedAt - placedAt} ms, answer → connected ${connectedAt - answeredAt} ms, ` +
                    `connected → frames rising on both ${framesAt - connectedAt} ms; ` +
                    `framesDecoded A ${firstFrames.A}→${decoding.A.framesDecoded}, B ${firstFrames.B}→${decoding.B.framesDecoded}`,
            );
            t.diagnostic(
                `A's selected pair: relay ${pa.local.relayProtocol ?? "?"} via ${pa.local.url ?? "?"} ` +
                    `${pa.local.address}:${pa.local.port} ↔ relay ${pa.remote.address}:${pa.remote.port}; ` +
                    `relayed bytes to peers ${relayed.to_peer}, to clients ${relayed.to_client}`,
            );
        });
    });

    test("deny table: with loopback peers not allowed, the relay-only call never connects", async (t) => {
        // --turn-allow-cidrs= (empty) drops --dev's loopback allowance, so
        // the relay refuses permissions for 127.0.0.1 peers.
        await withCall("denied", ["--turn-allow-cidrs=", "--turn-relay-ip", "127.0.0.1"], async (server, a, b) => {
            const { answeredAt } = await setUpCall(server, a, b);
            // ICE fails (Chromium gives up on every pair) and the SDK hangs
            // up with ice_failed; the call must never have connected.
            const ends = await Promise.all(
                [a, b].map((p) =>
                    waitCall(p, "the denied call to fail", DENIED_MS, (i) => i.state === "ended" || i.iceConnectionState === "failed", {
                        endedIsFailure: false,
                    }),
                ),
            );
            const failedMs = Date.now() - answeredAt;
            for (const [i, p] of ends.map((i, k) => [i, [a, b][k]])) {
                assert.ok(!i.states.includes("connected"), `${p.label}: the call connected although the relay denies loopback: ${JSON.stringify(i)}`);
            }
            // The side whose ICE failed hangs up with ice_failed; wait for
            // both to end so that nothing outlives the test.
            const ended = await Promise.all([a, b].map((p) => waitCall(p, "the denied call ended (CallEvent.Hangup)", DENIED_MS, (i) => i.state === "ended" && i.hangup, { endedIsFailure: false })));
            assert.ok(
                ended.some((i) => i.hangup?.party === "local" && i.hangup?.reason === "ice_failed"),
                `no side hung up with ice_failed: A ${JSON.stringify(ended[0].hangup)}, B ${JSON.stringify(ended[1].hangup)}`,
            );
            const denials = await server.metricSum("switchboard_turn_peer_denials_total");
            assert.ok(denials > 0, "switchboard_turn_peer_denials_total is 0: the deny table was not what stopped the call");
            const sa = await stats(a);
            assert.ok(!sa || sa.framesDecoded === 0, `A decoded video over a denied relay: ${JSON.stringify(sa)}`);
            t.diagnostic(
                `denied call failed ${failedMs} ms after answer; peer denials ${denials}; ` +
                    `hangups A ${JSON.stringify(ended[0].hangup)} B ${JSON.stringify(ended[1].hangup)}`,
            );
        });
    });
});
