#!/usr/bin/env node
// Evaluates what a Bicep template decides from its parameters, without
// Azure: the variables, and for each resource and module (and each element
// of a loop, where its `if` holds) the name, scope, location and params it
// would be deployed with. infra/infra_test.go uses it to check, on the
// template's own text, that every vault gets one diagnostic setting and
// that it points at the logs account of the vault's region (issue 17).
//
//   node scripts/bicep-eval.js infra/main.bicep params.json
//
// params.json is {"name": value, …}; parameters it does not give take their
// defaults. Values known only while deploying are stand-ins: a resource's
// id is /subscriptions/<sub>/resourceGroups/<rg>/providers/<type>/<name>
// from its own name and scope, anything else read of a resource or module
// is the text "<symbol.path>". subscription() is the all-zero subscription,
// resourceGroup() the one params.json names as "$resourceGroup" (default
// rg-app), uniqueString() a deterministic 13-letter hash (not Azure's).
//
// It covers the expressions the template uses (literals, interpolation,
// operators, conditionals, lambdas, for-expressions and the functions of
// FUNCS below) and fails on anything else, so that it never judges a
// template it misreads.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const Parser = require('web-tree-sitter');

const SUB = '00000000-0000-0000-0000-000000000000';

class Unsupported extends Error {}

function fail(node, what) {
  const { row, column } = node.startPosition;
  throw new Unsupported(`${row + 1}:${column + 1}: ${what}: ${node.text.slice(0, 80)}`);
}

function field(node, name) { return node.childForFieldName(name); }

// The operator of a binary or unary expression: its anonymous child.
function operator(node) {
  for (let i = 0; i < node.childCount; i++) {
    const c = node.child(i);
    if (!c.isNamed) return c.type;
  }
  return '';
}

function resourceGroupValue(sub, name) {
  return { name, id: `/subscriptions/${sub}/resourceGroups/${name}`, subscriptionId: sub };
}

function idOf(sub, rg, type, name) {
  return `/subscriptions/${sub}/resourceGroups/${rg}/providers/${type}/${name}`;
}

class Evaluator {
  constructor(root, params, src) {
    this.root = root;
    this.src = src;
    this.params = params;
    this.rg = resourceGroupValue(SUB, params.$resourceGroup || 'rg-app');
    this.decls = new Map(); // name -> {kind, node}
    for (const n of root.namedChildren) {
      const id = n.namedChildren.find((c) => c.type === 'identifier');
      if (!id) continue;
      const kind = { parameter_declaration: 'param', variable_declaration: 'var', resource_declaration: 'resource', module_declaration: 'module', output_declaration: 'output' }[n.type];
      if (kind) this.decls.set(id.text, { kind, node: n });
    }
    this.cache = new Map();
  }

  // value of a top-level symbol.
  symbol(name, node) {
    if (this.cache.has(name)) return this.cache.get(name);
    const d = this.decls.get(name);
    if (!d) fail(node, `unknown symbol ${name}`);
    let v;
    switch (d.kind) {
      case 'param': {
        if (Object.prototype.hasOwnProperty.call(this.params, name)) {
          v = this.params[name];
        } else {
          const kids = d.node.namedChildren;
          const dflt = kids[kids.length - 1];
          if (dflt.type === 'type' || dflt.type === 'identifier') fail(d.node, `parameter ${name} has no default and no value`);
          v = this.eval(dflt, {});
        }
        break;
      }
      case 'var': {
        const kids = d.node.namedChildren;
        v = this.eval(kids[kids.length - 1], {});
        break;
      }
      default:
        v = { $symbol: name, $kind: d.kind };
    }
    this.cache.set(name, v);
    return v;
  }

  // A resource's id from its own declaration (not a loop's element).
  resourceID(name, node) {
    const d = this.decls.get(name);
    const { type } = typeOf(d.node);
    const body = d.node.namedChildren.find((c) => c.type === 'object');
    if (!body) fail(node, `resource ${name} is a loop or condition: index it`);
    const props = objectProps(body);
    const rname = this.eval(props.name, {});
    let rg = this.rg;
    if (props.scope) rg = this.eval(props.scope, {});
    return idOf(rg.subscriptionId || SUB, rg.name, type, rname);
  }

  eval(node, env) {
    switch (node.type) {
      case 'string': {
        // The text between the quotes, with escapes and interpolations
        // replaced: the grammar leaves some content (a lone space) to no
        // node at all. Multi-line strings are not read.
        if (!node.text.startsWith("'") || node.text.startsWith("'''")) fail(node, 'string form');
        const src = this.src;
        let s = '';
        let pos = node.startIndex + 1;
        for (const c of node.namedChildren) {
          if (c.startIndex > pos) s += src.slice(pos, c.startIndex);
          if (c.type === 'string_content') s += c.text;
          else if (c.type === 'escape_sequence') s += unescape(c.text);
          else if (c.type === 'interpolation') s += str(this.eval(c.namedChildren[0], env));
          else fail(c, 'string part');
          pos = c.endIndex;
        }
        if (node.endIndex - 1 > pos) s += src.slice(pos, node.endIndex - 1);
        return s;
      }
      case 'number': return Number(node.text);
      case 'boolean': return node.text === 'true';
      case 'null': return null;
      case 'array': return node.namedChildren.filter((c) => c.type !== 'comment').map((c) => this.eval(c, env));
      case 'object': {
        const o = {};
        for (const p of node.namedChildren) {
          if (p.type === 'comment') continue;
          if (p.type !== 'object_property') fail(p, 'object member');
          const k = p.namedChildren[0];
          const key = k.type === 'string' ? this.eval(k, env) : k.text;
          o[key] = this.eval(p.namedChildren[p.namedChildren.length - 1], env);
        }
        return o;
      }
      case 'parenthesized_expression': return this.eval(node.namedChildren[0], env);
      case 'identifier': {
        if (Object.prototype.hasOwnProperty.call(env, node.text)) return env[node.text];
        return this.symbol(node.text, node);
      }
      case 'ternary_expression':
        return this.eval(field(node, 'condition'), env) ? this.eval(field(node, 'consequence'), env) : this.eval(field(node, 'alternative'), env);
      case 'unary_expression': {
        const a = this.eval(field(node, 'argument') || node.namedChildren[0], env);
        switch (operator(node)) {
          case '!': return !a;
          case '-': return -a;
        }
        return fail(node, 'unary operator');
      }
      case 'binary_expression': {
        const op = operator(node);
        const l = this.eval(field(node, 'left'), env);
        if (op === '&&') return l && this.eval(field(node, 'right'), env);
        if (op === '||') return l || this.eval(field(node, 'right'), env);
        if (op === '??') return l ?? this.eval(field(node, 'right'), env);
        const r = this.eval(field(node, 'right'), env);
        switch (op) {
          case '==': return JSON.stringify(l) === JSON.stringify(r);
          case '!=': return JSON.stringify(l) !== JSON.stringify(r);
          case '=~': return String(l).toLowerCase() === String(r).toLowerCase();
          case '<': return l < r;
          case '<=': return l <= r;
          case '>': return l > r;
          case '>=': return l >= r;
          case '+': return l + r;
          case '-': return l - r;
          case '*': return l * r;
          case '/': return Math.trunc(l / r);
          case '%': return l % r;
        }
        return fail(node, 'binary operator ' + op);
      }
      case 'member_expression': {
        const objNode = field(node, 'object');
        ambiguous(objNode);
        const prop = field(node, 'property').text;
        const o = this.eval(objNode, env);
        if (o && o.$symbol) {
          if (o.$kind === 'resource' && prop === 'id' && o.$index === undefined) return this.resourceID(o.$symbol, node);
          if (o.$kind === 'resource' && prop === 'id') return o.$id;
          return { $symbol: o.$symbol + '.' + prop, $kind: 'runtime' };
        }
        if (o === null || typeof o !== 'object') fail(node, 'member of a non-object');
        if (!(prop in o)) fail(node, `no property ${prop}`);
        return o[prop];
      }
      case 'subscript_expression': {
        ambiguous(field(node, 'object'));
        const o = this.eval(field(node, 'object'), env);
        const i = this.eval(field(node, 'index'), env);
        if (o && o.$symbol) return { $symbol: `${o.$symbol}[${i}]`, $kind: o.$kind === 'module' ? 'module' : 'runtime' };
        if (Array.isArray(o)) {
          if (!Number.isInteger(i) || i < 0 || i >= o.length) fail(node, `index ${i} out of range (${o.length})`);
          return o[i];
        }
        if (o && typeof o === 'object' && i in o) return o[i];
        return fail(node, 'subscript');
      }
      case 'call_expression': return this.call(node, env);
      case 'lambda_expression': return { $lambda: node, env };
      case 'for_statement': return this.forList(node, env).map((e) => e.value);
      default:
        return fail(node, 'expression ' + node.type);
    }
  }

  // forList evaluates a for-expression: [{value, env}] for each element
  // whose `if` (when the body is one) holds.
  forList(node, env) {
    const kids = node.namedChildren;
    let names = [];
    let k = 0;
    if (kids[0].type === 'for_loop_parameters') {
      names = kids[0].namedChildren.map((c) => c.text);
      k = 1;
    } else {
      names = [kids[0].text];
      k = 1;
    }
    const iterable = this.eval(kids[k], env);
    if (!Array.isArray(iterable)) fail(node, 'loop over a non-array');
    const body = field(node, 'body') || kids[kids.length - 1];
    const out = [];
    iterable.forEach((item, i) => {
      const inner = Object.assign({}, env, { [names[0]]: item });
      if (names[1]) inner[names[1]] = i;
      if (body.type === 'if_statement') {
        const cond = body.namedChildren.find((c) => c.type === 'parenthesized_expression');
        if (!this.eval(cond, inner)) return;
        const obj = body.namedChildren.find((c) => c.type === 'object');
        out.push({ value: this.eval(obj, inner), env: inner, node: obj });
        return;
      }
      out.push({ value: this.eval(body, inner), env: inner, node: body });
    });
    return out;
  }

  apply(fn, args, node) {
    if (!fn || !fn.$lambda) fail(node, 'not a lambda');
    const kids = fn.$lambda.namedChildren;
    const params = kids.length === 2 && kids[0].type === 'parenthesized_expression' ? kids[0].namedChildren.map((c) => c.text)
      : kids.slice(0, -1).map((c) => c.text);
    const env = Object.assign({}, fn.env);
    params.forEach((p, i) => { env[p] = args[i]; });
    return this.eval(kids[kids.length - 1], env);
  }

  call(node, env) {
    const fnNode = field(node, 'function');
    const argNodes = (field(node, 'arguments') || { namedChildren: [] }).namedChildren;
    if (fnNode.type !== 'identifier') fail(node, 'method call');
    const name = fnNode.text;
    const args = argNodes.map((a) => this.eval(a, env));
    const f = FUNCS[name];
    if (!f) fail(node, 'function ' + name);
    return f.call(this, args, node);
  }
}

// ambiguous refuses a member or subscript whose object the grammar made an
// operator or lambda expression: tree-sitter-bicep 1.1.0 parses
// `c ? a : f[1]` as `(c ? a : f)[1]`, `'a' == f[0]` as `('a' == f)[0]` and
// `r => r.x` as `(r => r).x`, where Bicep binds the postfix to f or r.
// Written `c ? a : (f[1])` or `r => (r.x)`, both agree.
function ambiguous(obj) {
  if (['binary_expression', 'ternary_expression', 'unary_expression', 'lambda_expression'].includes(obj.type)) {
    fail(obj.parent, 'a member or index after an operator parses differently in tree-sitter-bicep and in Bicep: parenthesize the operand');
  }
}

function str(v) {
  if (typeof v === 'string') return v;
  if (v && v.$symbol) return `<${v.$symbol}>`;
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function unescape(t) {
  return { "\\'": "'", '\\\\': '\\', '\\n': '\n', '\\r': '\r', '\\t': '\t', '\\$': '$' }[t] ?? t;
}

const FUNCS = {
  split(a) { return String(a[0]).split(a[1]); },
  join(a) { return a[0].map(str).join(a[1]); },
  trim(a) { return String(a[0]).trim(); },
  toLower(a) { return String(a[0]).toLowerCase(); },
  toUpper(a) { return String(a[0]).toUpperCase(); },
  replace(a) { return String(a[0]).split(a[1]).join(a[2]); },
  empty(a) {
    const v = a[0];
    return v === null || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && !v.$symbol && Object.keys(v).length === 0);
  },
  length(a) { return Array.isArray(a[0]) || typeof a[0] === 'string' ? a[0].length : Object.keys(a[0]).length; },
  take(a) { return a[0].slice(0, Math.max(a[1], 0)); },
  skip(a) { return a[0].slice(Math.max(a[1], 0)); },
  last(a) { return a[0][a[0].length - 1]; },
  first(a) { return a[0].length ? a[0][0] : null; },
  contains(a) {
    if (typeof a[0] === 'string') return a[0].toLowerCase().includes(String(a[1]).toLowerCase());
    if (Array.isArray(a[0])) return a[0].some((x) => JSON.stringify(x) === JSON.stringify(a[1]));
    return a[1] in a[0];
  },
  indexOf(a) { return Array.isArray(a[0]) ? a[0].findIndex((x) => JSON.stringify(x) === JSON.stringify(a[1])) : String(a[0]).indexOf(a[1]); },
  concat(a) { return Array.isArray(a[0]) ? [].concat(...a) : a.map(str).join(''); },
  union(a) {
    if (Array.isArray(a[0])) {
      const out = [];
      for (const arr of a) for (const x of arr) if (!out.some((y) => JSON.stringify(y) === JSON.stringify(x))) out.push(x);
      return out;
    }
    return Object.assign({}, ...a);
  },
  string(a) { return str(a[0]); },
  map(a, node) { return a[0].map((x, i) => this.apply(a[1], [x, i], node)); },
  filter(a, node) { return a[0].filter((x, i) => this.apply(a[1], [x, i], node)); },
  reduce(a, node) { return a[0].reduce((acc, x, i) => this.apply(a[2], [acc, x, i], node), a[1]); },
  uniqueString(a) {
    const h = crypto.createHash('sha256').update(a.map(str).join('|')).digest();
    let s = '';
    for (let i = 0; i < 13; i++) s += 'abcdefghijklmnopqrstuvwxyz234567'[h[i] % 32];
    return s;
  },
  guid(a) { return crypto.createHash('sha256').update(a.map(str).join('|')).digest('hex').slice(0, 32); },
  subscription() { return { id: '/subscriptions/' + SUB, subscriptionId: SUB }; },
  resourceGroup(a) {
    if (a.length === 0) return this.rg;
    if (a.length === 1) return resourceGroupValue(SUB, a[0]);
    return resourceGroupValue(a[0], a[1]);
  },
  environment() { return { name: 'AzureCloud', suffixes: { storage: 'core.windows.net' } }; },
  resourceId(a) {
    if (a.length === 3) return idOf(SUB, a[0], a[1], a[2]);
    if (a.length === 4) return idOf(a[0], a[1], a[2], a[3]);
    return idOf(SUB, this.rg.name, a[0], a[1]);
  },
  subscriptionResourceId(a) { return `/subscriptions/${SUB}/providers/${a[0]}/${a.slice(1).join('/')}`; },
};

function typeOf(decl) {
  const s = decl.namedChildren.find((c) => c.type === 'string');
  const text = s ? s.namedChildren.map((c) => c.text).join('') : '';
  const [type, apiVersion] = text.split('@');
  return { type, apiVersion };
}

function objectProps(obj) {
  const m = {};
  for (const p of obj.namedChildren) {
    if (p.type !== 'object_property') continue;
    m[p.namedChildren[0].text] = p.namedChildren[p.namedChildren.length - 1];
  }
  return m;
}

// deployed lists what a resource or module declaration deploys: one
// element, none (a false `if`), or one per loop element that passes.
function deployed(ev, decl) {
  const body = decl.namedChildren[decl.namedChildren.length - 1];
  let items;
  if (body.type === 'object') items = [{ env: {}, node: body }];
  else if (body.type === 'if_statement') {
    const cond = body.namedChildren.find((c) => c.type === 'parenthesized_expression');
    const obj = body.namedChildren.find((c) => c.type === 'object');
    items = ev.eval(cond, {}) ? [{ env: {}, node: obj }] : [];
  } else if (body.type === 'for_statement') items = ev.forList(body, {});
  else return null;
  return items.map(({ env, node }) => {
    const props = objectProps(node);
    const out = {};
    for (const k of ['name', 'location', 'scope', 'params', 'properties']) {
      if (props[k]) {
        try {
          out[k] = ev.eval(props[k], env);
        } catch (e) {
          if (!(e instanceof Unsupported)) throw e;
          out[k] = { $error: e.message };
        }
      }
    }
    return out;
  });
}

async function main(args) {
  if (args.length !== 2) {
    console.error('usage: bicep-eval.js <file.bicep> <params.json>');
    return 2;
  }
  await Parser.init();
  const lang = await Parser.Language.load(require.resolve('tree-sitter-bicep/tree-sitter-bicep.wasm'));
  const parser = new Parser();
  parser.setLanguage(lang);
  const src = fs.readFileSync(args[0], 'utf8');
  const tree = parser.parse(src);
  const params = JSON.parse(fs.readFileSync(args[1], 'utf8'));
  const ev = new Evaluator(tree.rootNode, params, src);
  const out = { vars: {}, resources: {}, modules: {}, outputs: {} };
  const plain = (v) => JSON.parse(JSON.stringify(v, (k, x) => (x && x.$lambda ? undefined : x && x.$symbol ? `<${x.$symbol}>` : x)));
  for (const [name, d] of ev.decls) {
    if (d.kind === 'output') {
      const kids = d.node.namedChildren;
      try {
        out.outputs[name] = plain(ev.eval(kids[kids.length - 1], {}));
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
        out.outputs[name] = { $error: e.message };
      }
    }
    if (d.kind === 'var') {
      let v;
      try {
        v = ev.symbol(name, d.node);
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
        out.vars[name] = { $error: e.message };
        continue;
      }
      out.vars[name] = JSON.parse(JSON.stringify(v, (k, x) => (x && x.$lambda ? undefined : x && x.$symbol ? `<${x.$symbol}>` : x)));
    }
    if (d.kind === 'resource' || d.kind === 'module') {
      let list;
      try {
        list = deployed(ev, d.node);
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
        list = { $error: e.message };
      }
      if (list) out[d.kind === 'resource' ? 'resources' : 'modules'][name] = JSON.parse(JSON.stringify(list, (k, x) => (x && x.$symbol ? `<${x.$symbol}>` : x)));
    }
  }
  console.log(JSON.stringify(out, null, 1));
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error('bicep-eval: ' + (err && err.message || err));
  process.exit(1);
});
