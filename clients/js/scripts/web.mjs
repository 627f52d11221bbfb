// Copies the built ES modules (dist/*.js) to src/presenced/web/client/, where presenced serves
// them to its demo page (`presenced serve --demo`). The copy is committed, so `pip install`
// and `presenced serve --demo` need no Node; tests/js/test_js_client.py fails when it is not
// the current build. Run `npm run build:web` after changing src/.

import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "..", "dist");
const target = resolve(here, "..", "..", "..", "src", "presenced", "web", "client");

mkdirSync(target, { recursive: true });
for (const name of readdirSync(target)) if (name.endsWith(".js")) rmSync(join(target, name));
const copied = readdirSync(dist).filter((name) => name.endsWith(".js")).sort();
for (const name of copied) copyFileSync(join(dist, name), join(target, name));
console.log(`copied ${copied.length} modules to ${target}`);
