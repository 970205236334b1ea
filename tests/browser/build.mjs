// Bundles the test page's script (page/client.js with matrix-js-sdk) for the
// browser with esbuild. `node build.mjs [outdir]` writes outdir/client.js
// (default: dist/); the tests call bundle() themselves into a scratch
// directory, so a stale dist/ can never be what they run.

import * as esbuild from "esbuild";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

/** Bundles page/client.js into outdir/client.js (with a source map). */
export async function bundle(outdir) {
    const outfile = path.join(outdir, "client.js");
    await esbuild.build({
        entryPoints: [path.join(here, "page", "client.js")],
        outfile,
        bundle: true,
        format: "esm",
        platform: "browser",
        target: "chrome120",
        sourcemap: true,
        logLevel: "warning",
        define: { "process.env.NODE_ENV": '"production"' },
    });
    return outfile;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const out = await bundle(path.resolve(process.argv[2] ?? path.join(here, "dist")));
    console.log(`bundled ${path.relative(process.cwd(), out)}`);
}
