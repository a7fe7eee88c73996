#!/usr/bin/env node
// Parses every .bicep file named (or found under the folders named) with the
// tree-sitter-bicep grammar and fails on any syntax error, printing
// file:line:column of each. The Bicep CLI, which would compile the files,
// is not in the registries this project installs from; this catches what a
// parser can: unbalanced braces, missing values, misspelt keywords, bad
// decorators. It runs the grammar's WebAssembly build through
// web-tree-sitter, so nothing is compiled on install.
//
//   node scripts/lint-bicep.js infra          # exit 0: all parse
//   node scripts/lint-bicep.js broken.bicep   # exit 1: errors printed
'use strict';
const fs = require('fs');
const path = require('path');
const Parser = require('web-tree-sitter');

function bicepFiles(p) {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return [p];
  return fs.readdirSync(p, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => {
      const q = path.join(p, e.name);
      if (e.isDirectory()) return bicepFiles(q);
      return e.name.endsWith('.bicep') ? [q] : [];
    });
}

// errors lists the ERROR and MISSING nodes of a tree, outermost first.
function errors(node, out) {
  if (node.type === 'ERROR' || node.isMissing) {
    out.push(node);
    return out; // one report per broken region
  }
  if (!node.hasError) return out;
  for (const child of node.children) errors(child, out);
  return out;
}

async function main(args) {
  if (args.length === 0) {
    console.error('usage: lint-bicep.js <file.bicep|folder>...');
    return 2;
  }
  const files = args.flatMap(bicepFiles);
  if (files.length === 0) {
    console.error('lint-bicep: no .bicep files in ' + args.join(' '));
    return 1;
  }
  await Parser.init();
  const lang = await Parser.Language.load(require.resolve('tree-sitter-bicep/tree-sitter-bicep.wasm'));
  const parser = new Parser();
  parser.setLanguage(lang);
  let bad = 0;
  for (const f of files) {
    const src = fs.readFileSync(f, 'utf8');
    const tree = parser.parse(src);
    for (const n of errors(tree.rootNode, [])) {
      bad++;
      const { row, column } = n.startPosition;
      const what = n.isMissing ? 'missing ' + n.type : 'syntax error near ' + JSON.stringify(src.slice(n.startIndex, Math.min(n.endIndex, n.startIndex + 40)));
      console.error(`${f}:${row + 1}:${column + 1}: ${what}`);
    }
    tree.delete();
  }
  if (bad > 0) {
    console.error(`lint-bicep: ${bad} syntax error(s) in ${files.length} file(s)`);
    return 1;
  }
  console.log(`lint-bicep: ${files.length} file(s) parse: ${files.join(' ')}`);
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error('lint-bicep: ' + (err && err.stack || err));
  process.exit(2);
});
