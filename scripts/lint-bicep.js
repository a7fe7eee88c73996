#!/usr/bin/env node
// Parses every .bicep file named (or found under the folders named) with the
// tree-sitter-bicep grammar and fails on any syntax error, printing
// file:line:column of each. The Bicep CLI, which would compile the files,
// is not in the registries this project installs from; this catches what a
// parser can: unbalanced braces, missing values, misspelt keywords, bad
// decorators. It runs the grammar's WebAssembly build through
// web-tree-sitter, so nothing is compiled on install.
//
// On files that parse it then applies the rules of scripts/bicep-rules.js:
// deploy-time constants (Bicep's BCP120) and module parameters and outputs
// against the module files.
//
//   node scripts/lint-bicep.js infra          # exit 0: all parse, no rule broken
//   node scripts/lint-bicep.js broken.bicep   # exit 1: errors printed
//   node scripts/lint-bicep.js --declarations infra
//                                             # JSON: each resource and module, its
//                                             # type, API version and property paths
'use strict';
const fs = require('fs');
const path = require('path');
const Parser = require('web-tree-sitter');
const rules = require('./bicep-rules');

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
  const dump = args[0] === '--declarations';
  if (dump) args = args.slice(1);
  if (args.length === 0) {
    console.error('usage: lint-bicep.js [--declarations] <file.bicep|folder>...');
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
  // Trees stay alive until the end: rules read module files too.
  const trees = new Map();
  const parse = (f) => {
    if (!trees.has(f)) trees.set(f, parser.parse(fs.readFileSync(f, 'utf8')));
    return trees.get(f).rootNode;
  };
  let bad = 0;
  let broken = 0;
  const decls = [];
  for (const f of files) {
    const src = fs.readFileSync(f, 'utf8');
    const root = parse(f);
    const syntax = errors(root, []);
    for (const n of syntax) {
      bad++;
      const { row, column } = n.startPosition;
      const what = n.isMissing ? 'missing ' + n.type : 'syntax error near ' + JSON.stringify(src.slice(n.startIndex, Math.min(n.endIndex, n.startIndex + 40)));
      console.error(`${f}:${row + 1}:${column + 1}: ${what}`);
    }
    if (syntax.length > 0) continue; // rules need a whole tree
    if (dump) {
      decls.push(...rules.declarations(f, root));
      continue;
    }
    for (const v of [...rules.deployTimeConstants(root), ...rules.moduleParams(f, root, parse)]) {
      broken++;
      const { row, column } = v.node.startPosition;
      console.error(`${f}:${row + 1}:${column + 1}: ${v.message}`);
    }
  }
  for (const t of trees.values()) t.delete();
  if (bad > 0 || broken > 0) {
    console.error(`lint-bicep: ${bad} syntax error(s), ${broken} rule violation(s) in ${files.length} file(s)`);
    return 1;
  }
  if (dump) {
    console.log(JSON.stringify(decls, null, 1));
    return 0;
  }
  console.log(`lint-bicep: ${files.length} file(s) parse and keep the rules: ${files.join(' ')}`);
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error('lint-bicep: ' + (err && err.stack || err));
  process.exit(2);
});
