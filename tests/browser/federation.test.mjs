// The 1:1 Matrix video call of call.test.mjs, with the two users on two
// federated Switchboard servers (issue 6). User A lives on server 1, user B
// on server 2; each server's name is 127.0.0.1:<its federation port>, both
// accept each other's self-signed federation certificates
// (federation.skip_tls_verify) and may reach loopback
// (federation.allow_cidrs). A creates a DM room on server 1 and invites
// @b:<server 2>; the invite, B's join and every call event (m.call.invite,
// m.call.candidates, m.call.answer, m.call.hangup; Matrix client-server
// spec, "Voice over IP") cross the federation API between the servers.
//
// Both clients set forceTURN and each gets TURN credentials from its own
// server, so media goes relay to relay: A ↔ server 1's TURN ↔ server 2's
// TURN ↔ B, all on 127.0.0.1 (each relay's deny table allows 127.0.0.1/32).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { bundle } from "./build.mjs";
import { buildSwitchboard, federationConfig, repoRoot, startFederating, startStaticServer, waitUntil } from "./server.mjs";
import { browserArgs, localpart, tail } from "./app.mjs";
import { assertRelayOnly, assertRelayPairs, openSdkPage, waitCall, waitDecoding } from "./sdkpage.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const artifacts = path.join(repoRoot, "test-artifacts", "browser");

// Deadlines (generous: a shared 2-core machine, and every signalling step
// crosses federation; none is a sleep).
const STEP_MS = 30_000; // one signalling step: sync, invite, join, ring
const CONNECT_MS = 45_000; // answer → both calls connected
const MEDIA_MS = 30_000; // connected → video frames decoded and rising


let bin;
let binDir;
let bundleDir;
let cfgDir;
let cfgFile;
let site;
let browser;



/** Opens the test page in a fresh browser context, logging into log. */
function openPage(label, log) {
    return openSdkPage(browser, site.url, label, log, STEP_MS);
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
    cfgDir = await mkdtemp(path.join(tmpdir(), "switchboard-browser-fedcfg-"));
    cfgFile = await federationConfig(cfgDir);
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
    for (const d of [bundleDir, binDir, cfgDir]) if (d) await rm(d, { recursive: true, force: true });
});

describe("1:1 Matrix video call in Chromium between two federated switchboard servers", () => {
    test("A on server 1 calls B on server 2: invite and join over federation, relay-only video both ways, hangup reaches B", async (t) => {
        const name = "federation";
        const servers = [];
        const pages = [];
        const log = [];
        try {
            servers.push(...(await Promise.all([startFederating(bin, cfgFile, "server1"), startFederating(bin, cfgFile, "server2")])));
            const [s1, s2] = servers;
            pages.push(await openPage("A", log), await openPage("B", log));
            const [a, b] = pages;
            const home = new Map([[a, s1], [b, s2]]);

            // Each user registers on their own server.
            const password = "correct horse battery staple";
            const [ua, ub] = await Promise.all(
                [a, b].map((p) =>
                    p.page.evaluate((opts) => window.sb.start(opts), {
                        baseUrl: home.get(p).baseUrl,
                        username: localpart(`fed-${p.label.toLowerCase()}`),
                        password,
                        forceTURN: true,
                    }),
                ),
            );
            assert.ok(ua.supportsVoip && ub.supportsVoip, "matrix-js-sdk says this Chromium cannot do VoIP");
            assert.ok(ua.userId.endsWith(`:${s1.serverName}`), `A's user ID ${ua.userId} is not on ${s1.serverName}`);
            assert.ok(ub.userId.endsWith(`:${s2.serverName}`), `B's user ID ${ub.userId} is not on ${s2.serverName}`);

            // Each page's TURN servers are its own server's relay.
            for (const p of [a, b]) {
                const s = home.get(p);
                const i = await waitCall(p, "TURN servers from /voip/turnServer", STEP_MS, (i) => i.turnServers.length > 0 || i.turnError);
                assert.equal(i.turnError, undefined, `${p.label}: /voip/turnServer failed`);
                const urls = i.turnServers.flatMap((x) => x.urls);
                const want = `turn:${s.addrs.turn_udp}?transport=udp`;
                assert.ok(urls.includes(want), `${p.label}: /voip/turnServer URIs ${JSON.stringify(urls)} lack its own server's ${want}`);
            }

            // A's room on server 1; the invite reaches B on server 2 over
            // federation, and B's join goes back the same way.
            const roomId = await a.page.evaluate((uid) => window.sb.createDirectRoom(uid), ub.userId);
            assert.ok(roomId.endsWith(`:${s1.serverName}`), `room ${roomId} was not created on ${s1.serverName}`);
            const invitedAt = Date.now();
            await waitUntil("B sees the invite (over federation)", STEP_MS, () =>
                b.page.evaluate((r) => window.sb.membership(r) === "invite", roomId),
            );
            const inviteMs = Date.now() - invitedAt;
            const joinAt = Date.now();
            await b.page.evaluate((r) => window.sb.join(r), roomId);
            await waitUntil("A sees B joined (over federation)", STEP_MS, () =>
                a.page.evaluate(([r, u]) => window.sb.membership(r, u) === "join", [roomId, ub.userId]),
            );
            // B's client must know A's membership from its own /sync (the
            // room state at the start of the timeline of a newly joined
            // room); matrix-js-sdk needs it to pick A as the call's opponent.
            await waitUntil("B sees A joined (room state in B's /sync after a federated join)", STEP_MS, () =>
                b.page.evaluate(([r, u]) => window.sb.membership(r, u) === "join", [roomId, ua.userId]),
            );
            const joinMs = Date.now() - joinAt;

            const placedAt = Date.now();
            await a.page.evaluate((r) => window.sb.placeVideoCall(r), roomId);
            await waitCall(b, "the incoming call ringing", STEP_MS, (i) => i.incoming > 0 && i.state === "ringing");
            const answeredAt = Date.now();
            await b.page.evaluate(() => window.sb.answer());
            await Promise.all([a, b].map((p) => waitCall(p, "call connected", CONNECT_MS, (i) => i.state === "connected")));
            const connectedAt = Date.now();

            // framesDecoded must be non-zero and then rise on both pages.
            const { firstFrames, decoding } = await waitDecoding([a, b], MEDIA_MS);
            const framesAt = Date.now();

            // Relay only, and each side's local relay candidate comes from
            // its own server's TURN ports.
            for (const p of [a, b]) {
                assertRelayOnly(p, decoding[p.label], home.get(p).addrs, "its own server's");
            }
            assertRelayPairs(a, decoding[a.label], b, decoding[b.label]);

            // Both relays carried media, to peers and to clients.
            const relayed = {};
            for (const s of servers) {
                for (const dir of ["to_peer", "to_client"]) {
                    const n = await s.metricSum("switchboard_turn_relayed_bytes_total", { direction: dir });
                    assert.ok(n > 0, `${s.label}: switchboard_turn_relayed_bytes_total{direction="${dir}"} is 0 although video decoded`);
                    relayed[`${s.label} ${dir}`] = n;
                }
            }

            await mkdir(artifacts, { recursive: true });
            for (const p of [a, b]) {
                await p.page.screenshot({ path: path.join(artifacts, `federation-${p.label}-connected.png`) });
            }

            // A hangs up on server 1; B hears it from server 2.
            await a.page.evaluate(() => window.sb.hangup());
            const ia = await waitCall(a, "own call ended (CallEvent.Hangup)", STEP_MS, (i) => i.state === "ended" && i.hangup, { endedIsFailure: false });
            assert.deepEqual(ia.hangup, { party: "local", reason: "user_hangup" }, "A's hangup");
            const ib = await waitCall(b, "hangup from A (CallEvent.Hangup)", STEP_MS, (i) => i.state === "ended" && i.hangup, { endedIsFailure: false });
            assert.deepEqual(ib.hangup, { party: "remote", reason: "user_hangup" }, `B's call ended otherwise: ${JSON.stringify(ib)}`);
            assert.ok(ib.states.includes("connected"), `B's states: ${ib.states}`);

            const pa = decoding.A.selectedPair;
            t.diagnostic(
                `invite seen by B ${inviteMs} ms, join seen by A ${joinMs} ms, call invite → connected ${connectedAt - placedAt} ms, ` +
                    `answer → connected ${connectedAt - answeredAt} ms, connected → frames rising on both ${framesAt - connectedAt} ms; ` +
                    `framesDecoded A ${firstFrames.A}→${decoding.A.framesDecoded}, B ${firstFrames.B}→${decoding.B.framesDecoded}`,
            );
            t.diagnostic(
                `A's selected pair: relay ${pa.local.relayProtocol ?? "?"} via ${pa.local.url ?? "?"} ` +
                    `${pa.local.address}:${pa.local.port} ↔ relay ${pa.remote.address}:${pa.remote.port}; relayed bytes ${JSON.stringify(relayed)}`,
            );
        } catch (err) {
            await mkdir(artifacts, { recursive: true });
            const consoleLog = log.join("\n");
            await writeFile(path.join(artifacts, `${name}-console.log`), consoleLog);
            for (const s of servers) {
                await writeFile(path.join(artifacts, `${name}-${s.label}.log`), s.log());
                err.message += `\n--- ${s.label} (${s.serverName}) log, tail; full copy in test-artifacts/browser/ ---\n${tail(s.log())}`;
            }
            for (const p of pages) {
                await p.page
                    .screenshot({ path: path.join(artifacts, `${name}-${p.label}-failed.png`), timeout: 5000 })
                    .catch(() => {});
            }
            err.message += `\n--- page console output ---\n${tail(consoleLog)}`;
            throw err;
        } finally {
            for (const p of pages) await p.context.close().catch(() => {});
            await Promise.all(servers.map((s) => s.stop()));
        }
    });
});
