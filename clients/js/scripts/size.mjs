// The client's size as a browser gets it: the tsc output (dist/*.js) raw, gzip -9 and brotli,
// and, when an esbuild binary is given ($ESBUILD: it is not a dependency of this package),
// one minified ES module bundle of PresencedClient. `npm run build` first.
//
//   npm run size
//   ESBUILD=/path/to/esbuild npm run size

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, gzipSync } from "node:zlib";

const dist = resolve(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const sizes = (buf) => ({ raw: buf.length, gzip: gzipSync(buf, { level: 9 }).length, brotli: brotliCompressSync(buf).length });
const show = (what, s) => console.log(`${what}: ${s.raw} B raw, ${s.gzip} B gzip, ${s.brotli} B brotli`);

const files = readdirSync(dist).filter((f) => f.endsWith(".js")).sort();
show(`tsc output, ${files.length} files`, sizes(Buffer.concat(files.map((f) => readFileSync(join(dist, f))))));

const esbuild = process.env.ESBUILD;
if (esbuild) {
  const dir = mkdtempSync(join(tmpdir(), "presenced-size-"));
  try {
    writeFileSync(join(dir, "entry.mjs"), `export { PresencedClient } from ${JSON.stringify(join(dist, "index.js"))};\n`);
    const out = join(dir, "bundle.min.js");
    execFileSync(esbuild, [join(dir, "entry.mjs"), "--bundle", "--minify", "--format=esm", "--target=es2020", `--outfile=${out}`, "--log-level=warning"]);
    show("esbuild --bundle --minify, PresencedClient", sizes(readFileSync(out)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  console.log("(set ESBUILD to an esbuild binary for the minified bundle)");
}
