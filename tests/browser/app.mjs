// Helpers for the tests of Switchboard's own browser client (web/static,
// served by the binary at /): open it in a fresh Chromium context and drive
// it through its forms and buttons like a person, reading media facts from
// window.switchboard (the page's read-only debugging view).

import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

import { repoRoot, waitUntil } from "./server.mjs";

export const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
export const artifacts = path.join(repoRoot, "test-artifacts", "browser");

export const browserArgs = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
];

export const PASSWORD = "correct horse battery staple";

/**
 * A WAV file (RIFF, 16-bit PCM, 48 kHz mono) of a loud 440 Hz tone, for
 * Chromium's --use-file-for-fake-audio-capture: the default fake
 * microphone beeps once a second, too briefly to count as speaking.
 */
export function toneWav(seconds = 2, rate = 48000) {
    const n = seconds * rate;
    const b = Buffer.alloc(44 + n * 2);
    b.write("RIFF", 0);
    b.writeUInt32LE(36 + n * 2, 4);
    b.write("WAVEfmt ", 8);
    b.writeUInt32LE(16, 16);
    b.writeUInt16LE(1, 20); // PCM
    b.writeUInt16LE(1, 22); // mono
    b.writeUInt32LE(rate, 24);
    b.writeUInt32LE(rate * 2, 28);
    b.writeUInt16LE(2, 32);
    b.writeUInt16LE(16, 34);
    b.write("data", 36);
    b.writeUInt32LE(n * 2, 40);
    for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(20000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
    return b;
}

/** A unique, valid Matrix localpart for this run. */
export function localpart(name) {
    return `${name}-${process.pid}-${Date.now().toString(36)}`;
}

export const desktop = { width: 1280, height: 800 };
export const phone = { width: 390, height: 780 };

/** Keeps the last max lines of text. */
export function tail(text, max = 200) {
    const lines = text.split("\n");
    if (lines.length <= max) return text;
    return `[... ${lines.length - max} earlier lines in the artifacts folder ...]\n${lines.slice(-max).join("\n")}`;
}

/**
 * Opens Switchboard's page from server in a fresh context. relayOnly puts
 * the page's "relay only" setting on, so that calls use only the server's
 * TURN relay on 127.0.0.1 (nothing leaves loopback); quality "sd" asks
 * the camera for 640×360 (less encoding work for a shared 2-core machine).
 */
export async function openApp(browser, server, label, log, { viewport = desktop, relayOnly = true, quality = "hd" } = {}) {
    const context = await browser.newContext({ viewport });
    await context.addInitScript((s) => {
        if (!localStorage.getItem("switchboard.settings")) localStorage.setItem("switchboard.settings", JSON.stringify(s));
    }, { relayOnly, quality });
    const page = await context.newPage();
    const stamp = () => new Date().toISOString().slice(11, 23);
    page.on("console", (m) => log.push(`${stamp()} [${label}] ${m.type()}: ${m.text()}`));
    page.on("pageerror", (err) => log.push(`${stamp()} [${label}] pageerror: ${err.stack ?? err}`));
    page.on("crash", () => log.push(`${stamp()} [${label}] page crashed`));
    await page.goto(`${server.baseUrl}/`);
    await page.locator("#login-form").waitFor({ state: "visible", timeout: 20_000 });
    return { label, context, page, userId: undefined };
}

/** Registers username through the sign-in form; resolves once the room list shows. */
export async function registerViaForm(p, username) {
    const { page } = p;
    await page.fill("#username", username);
    await page.fill("#password", PASSWORD);
    await page.click("#register");
    await page.locator("#main-view").waitFor({ state: "visible", timeout: 20_000 });
    p.userId = await waitUntil(`${p.label}: signed in`, 20_000, () => page.evaluate(() => window.switchboard.userId));
    return p.userId;
}

/** Saves a screenshot of p as test-artifacts/browser/<name>-<label>.png. */
export async function shot(p, name) {
    await mkdir(artifacts, { recursive: true });
    await p.page.screenshot({ path: path.join(artifacts, `${name}-${p.label}.png`), timeout: 10_000 }).catch(() => {});
}

/** The call tiles p shows (see window.switchboard.videos in app.js). */
export function tiles(p) {
    return p.page.evaluate(() => window.switchboard.videos());
}

/** Opens the room called name in p's room list. */
export async function openRoom(p, name) {
    await p.page.locator("#room-list button", { hasText: name }).first().click({ timeout: 20_000 });
    await p.page.locator("#room-pane").waitFor({ state: "visible", timeout: 10_000 });
}

/**
 * Runs body with a fresh server and a console log shared by its pages; on
 * failure writes the server log, the console log and screenshots of every
 * page to the artifacts folder and appends their tails to the error.
 */
export async function withServer(name, startServer, body) {
    const server = await startServer();
    const pages = [];
    const log = [];
    try {
        await body(server, pages, log);
    } catch (err) {
        const serverLog = server.log();
        const consoleLog = log.join("\n");
        await mkdir(artifacts, { recursive: true });
        await writeFile(path.join(artifacts, `${name}-server.log`), serverLog);
        await writeFile(path.join(artifacts, `${name}-console.log`), consoleLog);
        for (const p of pages) await shot(p, `${name}-failed`);
        err.message += `\n--- switchboard log (test "${name}"; full copy in test-artifacts/browser/) ---\n${tail(serverLog)}\n--- page console ---\n${tail(consoleLog)}`;
        throw err;
    } finally {
        for (const p of pages) await p.context.close().catch(() => {});
        await server.stop();
    }
}

/** Waits until p's remote video tile(s) decode: videoWidth > 0 and frames rising. */
export async function waitRemoteVideo(p, what, ms, count = 1) {
    const first = await waitUntil(`${p.label}: ${what}: ${count} remote video(s) with width > 0`, ms, async () => {
        const ts = (await tiles(p)).filter((t) => !t.local && t.videoWidth > 0 && t.frames > 0);
        return ts.length >= count ? ts : undefined;
    });
    return waitUntil(`${p.label}: ${what}: frames rising`, ms, async () => {
        const now = (await tiles(p)).filter((t) => !t.local);
        const rising = first.every((f) => now.some((t) => t.key === f.key && t.frames > f.frames));
        return rising ? now : undefined;
    });
}
