// The hooks' size as a browser gets it: the tsc output (dist/*.js) raw, gzip -9 and brotli,
// and, when an esbuild binary is given ($ESBUILD: it is not a dependency of this package),
// one minified ES module bundle of every export with react and @presenced/client left out
// (an app has them anyway), then the same with @presenced/client in. `npm run build` first.
//
//   npm run size
//   ESBUILD=/path/to/esbuild npm run size

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, gzipSync } from "node:zlib";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const sizes = (buf) => ({ raw: buf.length, gzip: gzipSync(buf, { level: 9 }).length, brotli: brotliCompressSync(buf).length });
const show = (what, s) => console.log(`${what}: ${s.raw} B raw, ${s.gzip} B gzip, ${s.brotli} B brotli`);

const files = readdirSync(dist).filter((f) => f.endsWith(".js")).sort();
show(`tsc output, ${files.length} files`, sizes(Buffer.concat(files.map((f) => readFileSync(join(dist, f))))));

const esbuild = process.env.ESBUILD;
if (esbuild) {
  const dir = mkdtempSync(join(tmpdir(), "presenced-react-size-"));
  try {
    const entry = join(dir, "entry.mjs");
    writeFileSync(entry, `export * from ${JSON.stringify(join(dist, "index.js"))};\n`);
    const bundle = (externals, what) => {
      const out = join(dir, "bundle.min.js");
      const args = [entry, "--bundle", "--minify", "--format=esm", "--target=es2020", `--outfile=${out}`, "--log-level=warning"];
      execFileSync(esbuild, [...args, ...externals.map((e) => `--external:${e}`)], { cwd: root });
      show(what, sizes(readFileSync(out)));
    };
    bundle(["react", "@presenced/client"], "esbuild --bundle --minify, the hooks (react, @presenced/client external)");
    bundle(["react"], "esbuild --bundle --minify, the hooks with @presenced/client (react external)");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  console.log("(set ESBUILD to an esbuild binary for the minified bundles)");
}
