// Helpers shared by the tests that drive the matrix-js-sdk test page
// (page/client.js, bundled by build.mjs): open it, read its call state and
// WebRTC stats through window.sb, and check a relay-only call's media.

import assert from "node:assert/strict";

import { waitUntil } from "./server.mjs";

/**
 * Opens the SDK page at url in a fresh context of browser, logging its
 * console into log, and waits until the page says it is ready.
 */
export async function openSdkPage(browser, url, label, log, readyMs) {
    const context = await browser.newContext({ viewport: { width: 720, height: 420 } });
    const page = await context.newPage();
    const stamp = () => new Date().toISOString().slice(11, 23);
    page.on("console", (m) => log.push(`${stamp()} [${label}] ${m.type()}: ${m.text()}`));
    page.on("pageerror", (err) => log.push(`${stamp()} [${label}] pageerror: ${err.stack ?? err}`));
    page.on("crash", () => log.push(`${stamp()} [${label}] page crashed`));
    await page.goto(`${url}/`);
    await page.waitForFunction(() => window.sbReady === true, null, { timeout: readyMs });
    return { label, context, page };
}

/** sb.info() of a page. */
export function info(p) {
    return p.page.evaluate(() => window.sb.info());
}

/** sb.stats() of a page. */
export function stats(p) {
    return p.page.evaluate(() => window.sb.stats());
}

/** Polls p's call until pred(info) holds; fails early if the call ended. */
export function waitCall(p, what, ms, pred, { endedIsFailure = true } = {}) {
    return waitUntil(`${p.label}: ${what}`, ms, async () => {
        const i = await info(p);
        if (pred(i)) return i;
        if (endedIsFailure && i.state === "ended") {
            throw new Error(`${p.label}: call ended while waiting for ${what}: ${JSON.stringify(i)}`);
        }
        return undefined;
    });
}

/**
 * Waits until framesDecoded is non-zero and then rises on every page.
 * Returns each page's first count and the stats that showed it rising.
 */
export async function waitDecoding(pages, ms) {
    const firstFrames = {};
    const decoding = {};
    for (const p of pages) {
        const s1 = await waitUntil(`${p.label}: video frames decoded`, ms, async () => {
            const s = await stats(p);
            return s && s.framesDecoded > 0 ? s : undefined;
        });
        firstFrames[p.label] = s1.framesDecoded;
        decoding[p.label] = await waitUntil(`${p.label}: framesDecoded rising past ${s1.framesDecoded}`, ms, async () => {
            const s = await stats(p);
            return s && s.framesDecoded > s1.framesDecoded ? s : undefined;
        });
    }
    return { firstFrames, decoding };
}

/**
 * Checks that page p's call runs relay only: the selected pair is relay to
 * relay, every local candidate is a relayed one, and the local one came
 * from one of the TURN ports in addrs (a server's --addr-file). Returns
 * the selected pair.
 */
export function assertRelayOnly(p, s, addrs, whose = "our") {
    const pair = s.selectedPair;
    assert.ok(pair, `${p.label}: no selected candidate pair: ${JSON.stringify(s)}`);
    assert.equal(pair.local?.candidateType, "relay", `${p.label}: local candidate of the selected pair: ${JSON.stringify(pair)}`);
    // The remote side is the peer's relayed address. Chromium types it
    // "prflx" when the peer's check from it arrived before its candidate
    // did (it learnt the address from the check); assertRelayPairs then
    // checks that it is the peer's relay candidate.
    assert.ok(
        ["relay", "prflx"].includes(pair.remote?.candidateType),
        `${p.label}: remote candidate of the selected pair: ${JSON.stringify(pair)}`,
    );
    assert.ok(
        s.localCandidates.every((c) => c.startsWith("relay ")),
        `${p.label}: forceTURN gathered non-relay candidates: ${JSON.stringify(s.localCandidates)}`,
    );
    if (pair.local.url) {
        const port = pair.local.url.match(/:(\d+)(\?|$)/)?.[1];
        const ours = [addrs.turn_udp, addrs.turn_tcp, addrs.turn_tls].filter(Boolean).map((x) => x.split(":").pop());
        assert.ok(ours.includes(port), `${p.label}: relay candidate from ${pair.local.url}, not ${whose} TURN ports ${ours}`);
    }
    return pair;
}

/**
 * Checks that two pages' selected pairs are the two ends of one path:
 * each one's remote address is the other's local (relayed) address.
 * Chromium hides a prflx candidate's address in stats (it reports ""),
 * so for one only the port is compared.
 */
export function assertRelayPairs(a, sa, b, sb) {
    const pa = sa.selectedPair;
    const pb = sb.selectedPair;
    const same = (remote, local) => remote?.port === local?.port && (remote?.address === "" || remote?.address === local?.address);
    assert.ok(same(pa.remote, pb.local), `${a.label}'s remote is not ${b.label}'s relayed address: ${JSON.stringify({ pa, pb })}`);
    assert.ok(same(pb.remote, pa.local), `${b.label}'s remote is not ${a.label}'s relayed address: ${JSON.stringify({ pa, pb })}`);
}
