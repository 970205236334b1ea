// Helpers for the browser tests: the switchboard launcher shared with the
// Node tests (tests/lib/server.mjs), here with debug logging, and a tiny
// static HTTP server for the bundled test pages.

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import path from "node:path";

import * as lib from "../lib/server.mjs";

export { buildSwitchboard, federationConfig, repoRoot, Switchboard } from "../lib/server.mjs";

/**
 * lib.waitUntil, polling every 100 ms unless told: browser conditions
 * evaluate in the page, which costs more than a fetch.
 */
export function waitUntil(what, ms, fn, everyMs = 100) {
    return lib.waitUntil(what, ms, fn, everyMs);
}

/** Starts a switchboard (lib.startSwitchboard) that logs at debug level. */
export function startSwitchboard(bin, opts = {}) {
    return lib.startSwitchboard(bin, { label: "browser", logLevel: "debug", ...opts });
}

/** Starts a federating switchboard (lib.startFederating) that logs at debug level. */
export function startFederating(bin, cfg, label, opts = {}) {
    return lib.startFederating(bin, cfg, label, { label: "browser", logLevel: "debug", ...opts });
}

const contentTypes = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json",
};

/**
 * Serves the files named in files (URL path → absolute file path) on
 * 127.0.0.1 port 0. Returns { url, close }.
 */
export async function startStaticServer(files) {
    const srv = createServer(async (req, res) => {
        const file = files[new URL(req.url, "http://x").pathname];
        if (req.method !== "GET" || !file) {
            res.writeHead(404).end();
            return;
        }
        try {
            const body = await readFile(file);
            res.writeHead(200, {
                "content-type": contentTypes[path.extname(file)] ?? "application/octet-stream",
                "cache-control": "no-store",
            });
            res.end(body);
        } catch (err) {
            res.writeHead(500).end(String(err));
        }
    });
    await new Promise((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", resolve);
    });
    const { port } = srv.address();
    return {
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise((resolve) => {
            srv.closeAllConnections();
            srv.close(() => resolve());
        }),
    };
}
