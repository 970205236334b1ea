// Errors a person can meet in Switchboard's web client (web/static), said in
// plain words, in Debian's Chromium against a real `switchboard serve --dev`:
// a wrong password, a message over the server's 64 KB event limit (the toast
// names the limit, shows no library text, and leaves the room's header
// visible at desktop and phone widths), and a server that has gone away.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants } from "node:fs/promises";
import { chromium } from "playwright-core";

import { buildSwitchboard, startSwitchboard, waitUntil } from "./server.mjs";
import { browserArgs, chromiumPath, desktop, localpart, openApp, phone, registerViaForm, shot, withServer } from "./app.mjs";

const STEP_MS = 20_000;

let bin;
let browser;

before(async () => {
    try {
        await access(chromiumPath, constants.X_OK);
    } catch {
        throw new Error(`no Chromium at ${chromiumPath}: apt-get install -y chromium, or set CHROMIUM_BIN`);
    }
    ({ bin } = await buildSwitchboard());
    browser = await chromium.launch({ executablePath: chromiumPath, args: browserArgs, timeout: 60_000 });
});

after(async () => {
    await browser?.close();
});

/** The bounding boxes of p's toast and room header. */
function boxes(p) {
    return p.page.evaluate(() => {
        const r = (sel) => {
            const b = document.querySelector(sel).getBoundingClientRect();
            return { top: b.top, bottom: b.bottom, left: b.left, right: b.right, height: b.height };
        };
        return { toast: r("#toast"), head: r(".room-head") };
    });
}

/** p creates a room called name and sends a message of about 100 KB. */
async function sendTooLarge(p, name) {
    await p.page.fill("#new-room-name", name);
    await p.page.click("#create-room");
    await p.page.locator("#room-name", { hasText: name }).waitFor({ timeout: STEP_MS });
    const big = "x".repeat(100_000);
    await p.page.fill("#message", big);
    await p.page.press("#message", "Enter");
    const toast = p.page.locator("#toast");
    await toast.waitFor({ state: "visible", timeout: STEP_MS });
    const text = await toast.innerText();
    assert.match(text, /^This message is too long to send \(limit 64 KB\)/, `${p.label}: toast ${JSON.stringify(text)}`);
    assert.doesNotMatch(text, /gomatrixserverlib|bytes >|M_TOO_LARGE|HTTP/, `${p.label}: no library or protocol text in the toast`);
    assert.equal((await p.page.inputValue("#message")).length, big.length, `${p.label}: the unsent text stays in the box`);
    const { toast: t, head: h } = await boxes(p);
    assert.ok(h.height > 0, `${p.label}: the room header is showing`);
    const overlap = t.top < h.bottom && h.top < t.bottom && t.left < h.right && h.left < t.right;
    assert.ok(!overlap, `${p.label}: toast ${JSON.stringify(t)} covers the room header ${JSON.stringify(h)}`);
    await shot(p, "web-errors-too-large");
}

describe("web client errors in plain words", () => {
    test("wrong password, a too-large message (toast clear of the room header), an unreachable server", async () => {
        await withServer("web-errors", () => startSwitchboard(bin), async (server, pages, log) => {
            const a = await openApp(browser, server, "A", log, { viewport: desktop });
            const b = await openApp(browser, server, "B", log, { viewport: phone });
            pages.push(a, b);
            await registerViaForm(a, localpart("errora"));

            // A wrong password on the other page.
            await b.page.fill("#username", a.userId.slice(1).split(":")[0]);
            await b.page.fill("#password", "not the password");
            await b.page.click("#signin");
            await b.page.locator("#login-error", { hasText: "Wrong username or password." }).waitFor({ timeout: STEP_MS });
            await registerViaForm(b, localpart("errorb"));

            await sendTooLarge(a, "Long letters");
            await sendTooLarge(b, "Long letters too");

            // The server goes away: the status line says so, and a message
            // sent now is not lost silently.
            await a.page.locator("#toast").evaluate((el) => (el.hidden = true));
            await server.stop();
            await a.page.locator("#conn", { hasText: "Offline: cannot reach the server" }).waitFor({ timeout: STEP_MS });
            await a.page.fill("#message", "anyone there?");
            await a.page.press("#message", "Enter");
            const t = a.page.locator("#toast", { hasText: "Your message was not sent: Cannot reach the server at" });
            await t.waitFor({ timeout: STEP_MS });
            await shot(a, "web-errors-unreachable");
            assert.equal(await a.page.inputValue("#message"), "anyone there?");
            await waitUntil("the toast still clear of the room header", STEP_MS, async () => {
                const { toast: tb, head: h } = await boxes(a);
                return tb.top >= h.bottom;
            });
        });
    });
});
