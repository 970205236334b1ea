// The one launcher of a real switchboard for the Node tests (tests/js) and
// the browser tests (tests/browser): it finds the binary built before the
// tests, runs it as `serve --dev` with a fresh data directory and every
// listener on 127.0.0.1 port 0 (the addresses come back through
// --addr-file), reads its Prometheus metrics, starts federating pairs, and
// stops it with SIGTERM (SIGKILL after a deadline). It polls with deadlines,
// never sleeps for a fixed time.
//
// It uses Node's built-in modules only, so each test package keeps its own
// npm dependencies: tests/js imports it directly, tests/browser through its
// server.mjs (which adds debug logging and a static file server).

import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer as createTCPServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (tests/lib/../..). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Polls fn until it returns a truthy value (and returns it), or throws after ms. */
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
 * A running switchboard process started by startSwitchboard.
 *
 * baseUrl is the client API (http://127.0.0.1:PORT); addrs is the parsed
 * --addr-file; serverName is "localhost" (--dev's) unless startFederating
 * named it.
 */
export class Switchboard {
    constructor(proc, work, addrs, logChunks, stderrChunks) {
        this.proc = proc;
        this.work = work;
        this.addrs = addrs;
        this.baseUrl = `http://${addrs.client}`;
        this.serverName = "localhost";
        this.logChunks = logChunks;
        this.stderrChunks = stderrChunks;
        this.exited = new Promise((resolve) => {
            if (proc.exitCode !== null || proc.signalCode !== null) resolve();
            else proc.once("exit", () => resolve());
        });
    }

    /** Everything the server wrote (stdout and stderr, interleaved) so far. */
    log() {
        return Buffer.concat(this.logChunks).toString("utf8");
    }

    /** Everything the server wrote to stderr (its log) so far. */
    stderr() {
        return Buffer.concat(this.stderrChunks).toString("utf8");
    }

    /** Whether the process is still running. */
    running() {
        return this.proc.exitCode === null && this.proc.signalCode === null;
    }

    /**
     * The server's Prometheus text exposition from --metrics-listen, parsed
     * into a map from "name{labels}" to value.
     */
    async metrics() {
        const res = await fetch(`http://${this.addrs.metrics}/metrics`);
        if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`);
        const out = new Map();
        for (const line of (await res.text()).split("\n")) {
            if (line === "" || line.startsWith("#")) continue;
            const sp = line.lastIndexOf(" ");
            out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
        }
        return out;
    }

    /**
     * The sum of the series of the metric called name whose labels include
     * every label=value of match.
     */
    async metricSum(name, match = {}) {
        let sum = 0;
        for (const [k, v] of await this.metrics()) {
            if (k !== name && !k.startsWith(`${name}{`)) continue;
            if (Object.entries(match).every(([l, want]) => k.includes(`${l}="${want}"`))) sum += v;
        }
        return sum;
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
 * Starts `bin serve --dev` with every listener on 127.0.0.1 port 0 and a
 * fresh data directory (named after label), plus --log-level logLevel when
 * given and extraArgs, and waits (up to startMs) for --addr-file.
 */
export async function startSwitchboard(bin, { startMs = 60000, extraArgs = [], logLevel, label = "test" } = {}) {
    const work = await mkdtemp(path.join(tmpdir(), `switchboard-${label}-data-`));
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
        ...(logLevel ? ["--log-level", logLevel] : []),
        ...extraArgs,
    ];
    // cwd is the scratch directory so nothing lands in the repository.
    const proc = spawn(bin, args, { cwd: work, stdio: ["ignore", "pipe", "pipe"] });
    const logChunks = [];
    const stderrChunks = [];
    proc.stdout.on("data", (b) => logChunks.push(b));
    proc.stderr.on("data", (b) => {
        logChunks.push(b);
        stderrChunks.push(b);
    });
    let spawnError;
    proc.once("error", (err) => {
        spawnError = err;
    });
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
        for (const k of ["client", "metrics", "turn_udp", "turn_tcp"]) {
            if (!addrs[k]) throw new Error(`--addr-file has no ${k} address: ${JSON.stringify(addrs)}`);
        }
    } catch (err) {
        if (proc.exitCode === null && proc.signalCode === null) {
            const exited = new Promise((resolve) => proc.once("exit", resolve));
            proc.kill("SIGKILL");
            await exited;
        }
        await rm(work, { recursive: true, force: true });
        err.message += `\n--- switchboard log ---\n${Buffer.concat(logChunks).toString("utf8")}`;
        throw err;
    }
    return new Switchboard(proc, work, addrs, logChunks, stderrChunks);
}

/**
 * Writes the config file federating test servers layer over --dev (only
 * the federation client settings have no flag): accept each other's
 * self-signed federation certificates and reach loopback. Returns its path.
 */
export async function federationConfig(dir) {
    const cfg = path.join(dir, "federation.yaml");
    await writeFile(cfg, "federation:\n  skip_tls_verify: true\n  allow_cidrs: [\"127.0.0.1/32\"]\n");
    return cfg;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
function freePort() {
    return new Promise((resolve, reject) => {
        const srv = createTCPServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/**
 * Starts one federating switchboard: --dev, server name and federation
 * listener 127.0.0.1:<port> (the port must be known before start, since it
 * is part of the name), the federation client settings from cfg (see
 * federationConfig), and TURN relaying to 127.0.0.1; opts go to
 * startSwitchboard. Retries with a new port if another process took the
 * chosen one in between. The returned Switchboard carries label and
 * serverName.
 */
export async function startFederating(bin, cfg, label, opts = {}) {
    let lastErr;
    for (let attempt = 0; attempt < 3; attempt++) {
        const port = await freePort();
        const name = `127.0.0.1:${port}`;
        try {
            const server = await startSwitchboard(bin, {
                ...opts,
                extraArgs: [
                    "--config", cfg,
                    "--server-name", name,
                    "--federation-listen", name,
                    "--turn-allow-cidrs", "127.0.0.1/32",
                    "--turn-relay-ip", "127.0.0.1",
                    ...(opts.extraArgs ?? []),
                ],
            });
            server.label = label;
            server.serverName = name;
            return server;
        } catch (err) {
            lastErr = err;
            if (!/address already in use/i.test(err.message)) throw err;
        }
    }
    throw lastErr;
}
