// Starts a real switchboard binary for the integration tests: built before the
// tests (see buildSwitchboard), run as `serve --dev` with a fresh data
// directory and every listener on 127.0.0.1 port 0, found through
// --addr-file, and stopped with SIGTERM (SIGKILL after a deadline).

import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (tests/js/../..). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Polls fn until it returns a truthy value, or throws after ms. */
export async function waitUntil(what, ms, fn, everyMs = 50) {
    const deadline = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, everyMs));
    }
}

/**
 * The switchboard binary under test: SWITCHBOARD_TEST_BINARY when set (`make
 * test` builds it once for the whole run), else bin/switchboard, which `npm
 * test` builds first (scripts/test-binary.sh, the "pretest" script). Nothing
 * is compiled here, inside a test's time limit. Returns { bin, dir } where
 * dir (a directory to remove afterwards) is always undefined.
 */
export async function buildSwitchboard() {
    const bin = path.resolve(process.env.SWITCHBOARD_TEST_BINARY || path.join(repoRoot, "bin", "switchboard"));
    try {
        await access(bin, constants.X_OK);
    } catch {
        throw new Error(
            `no switchboard binary at ${bin}: run the tests with \`npm test\` (it builds bin/switchboard first) ` +
                "or `make build`, or set SWITCHBOARD_TEST_BINARY",
        );
    }
    return { bin, dir: undefined };
}

/**
 * A running switchboard process.
 *
 * baseUrl is the client API (http://127.0.0.1:PORT); addrs is the parsed
 * --addr-file; stderr() returns everything the process wrote to stderr.
 */
export class Switchboard {
    constructor(proc, work, addrs, stderrChunks) {
        this.proc = proc;
        this.work = work;
        this.addrs = addrs;
        this.baseUrl = `http://${addrs.client}`;
        this.serverName = "localhost"; // --dev's server_name
        this.stderrChunks = stderrChunks;
        this.exited = new Promise((resolve) => {
            if (proc.exitCode !== null || proc.signalCode !== null) resolve();
            else proc.once("exit", () => resolve());
        });
    }

    /** Everything the server wrote to stderr so far. */
    stderr() {
        return Buffer.concat(this.stderrChunks).toString("utf8");
    }

    /** Whether the process is still running. */
    running() {
        return this.proc.exitCode === null && this.proc.signalCode === null;
    }

    /**
     * Stops the server: SIGTERM, then SIGKILL if it has not exited within
     * graceMs. Removes the data directory. Returns the exit code, the
     * signal, and whether SIGKILL was needed. Calling it again returns the
     * first result.
     */
    stop(graceMs = 15000) {
        this.stopping ??= this.#stop(graceMs);
        return this.stopping;
    }

    async #stop(graceMs) {
        let killed = false;
        if (this.running()) {
            this.proc.kill("SIGTERM");
            let timer;
            const deadline = new Promise((resolve) => {
                timer = setTimeout(() => {
                    if (this.running()) {
                        killed = true;
                        this.proc.kill("SIGKILL");
                    }
                    resolve();
                }, graceMs);
            });
            await Promise.race([this.exited, deadline]);
            clearTimeout(timer);
            await this.exited;
        }
        await rm(this.work, { recursive: true, force: true });
        return { code: this.proc.exitCode, signal: this.proc.signalCode, killed };
    }
}

/**
 * Starts `bin serve --dev` on loopback port 0 for every listener, with a
 * fresh data directory, and waits (up to startMs) for --addr-file.
 */
export async function startSwitchboard(bin, { startMs = 60000, extraArgs = [] } = {}) {
    const work = await mkdtemp(path.join(tmpdir(), "switchboard-js-data-"));
    const addrFile = path.join(work, "addrs.json");
    const args = [
        "serve",
        "--dev",
        "--data-dir", path.join(work, "data"),
        "--addr-file", addrFile,
        "--client-listen", "127.0.0.1:0",
        "--federation-listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0",
        "--turn-listen", "127.0.0.1:0",
        "--turn-tls-listen", "127.0.0.1:0",
        "--media-port", "0",
        "--media-tcp-port", "0",
        ...extraArgs,
    ];
    // cwd is the scratch directory so nothing lands in the repository.
    const proc = spawn(bin, args, { cwd: work, stdio: ["ignore", "ignore", "pipe"] });
    const stderrChunks = [];
    proc.stderr.on("data", (b) => stderrChunks.push(b));
    let spawnError;
    proc.once("error", (err) => {
        spawnError = err;
    });
    const stderrText = () => Buffer.concat(stderrChunks).toString("utf8");
    let addrs;
    try {
        addrs = await waitUntil("switchboard --addr-file", startMs, async () => {
            if (spawnError) throw spawnError;
            if (proc.exitCode !== null || proc.signalCode !== null) {
                throw new Error(`switchboard exited early (code ${proc.exitCode}, signal ${proc.signalCode})`);
            }
            try {
                return JSON.parse(await readFile(addrFile, "utf8"));
            } catch {
                return undefined; // not written yet (written atomically by rename)
            }
        });
        if (!addrs.client) throw new Error(`--addr-file has no client address: ${JSON.stringify(addrs)}`);
    } catch (err) {
        if (proc.exitCode === null && proc.signalCode === null) {
            const exited = new Promise((resolve) => proc.once("exit", resolve));
            proc.kill("SIGKILL");
            await exited;
        }
        await rm(work, { recursive: true, force: true });
        err.message += `\n--- switchboard stderr ---\n${stderrText()}`;
        throw err;
    }
    return new Switchboard(proc, work, addrs, stderrChunks);
}
