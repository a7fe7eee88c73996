// Rules over tree-sitter-bicep syntax trees, for the mistakes a parser can
// see but the Bicep compiler (not installable here) would report first:
//
//  - deployTimeConstants: a property ARM must know when the deployment
//    starts (BCP120) reads a value it only learns while deploying.
//  - moduleParams: a module is given a parameter its file does not declare,
//    or not given one it requires; an output is read that it does not have.
//  - declarations: every resource and module with its type, API version and
//    the property paths the template writes (for infra_test.go's table of
//    confirmed API versions).
//
// The deploy-time-constant rule follows the Bicep compiler's own
// (Azure/bicep src/Bicep.Core/TypeSystem/DeployTimeConstant*.cs and
// Providers/Az/AzResourceTypeProvider.cs):
//
//  - containers: a resource's name, scope, parent and the properties in
//    LanguageConstants.WriteOnlyDeployTimeConstantPropertyNames (location,
//    kind, subscriptionId, resourceGroup, managedBy, extendedLocation,
//    zones, placement, plan, sku, identity, managedByExtended, tags,
//    asserts); a module's name, scope and identity; every `if` condition;
//    every `for` expression (and a variable's for-body). An `existing`
//    resource's own body is not checked (Bicep skips it too), but it makes
//    the resource a "runtime" one when its name or scope is not constant.
//  - readable at deploy time: of a resource only id, name, type, apiVersion
//    (ReadWriteDeployTimeConstantPropertyNames), and none of them for a
//    runtime existing resource; of a module only name and scope, never its
//    outputs. A whole resource or module used as a value is not readable
//    (except as scope/parent), nor is reference() or list*().
//  - variables are followed: a container reading a variable reads whatever
//    that variable reads (Bicep's DeployTimeConstantIndirectViolationVisitor).
'use strict';
const fs = require('fs');
const path = require('path');

const RESOURCE_CONSTANTS = new Set([
  'name', 'scope', 'parent',
  'location', 'kind', 'subscriptionId', 'resourceGroup', 'managedBy', 'extendedLocation',
  'zones', 'placement', 'plan', 'sku', 'identity', 'managedByExtended', 'tags', 'asserts',
]);
const MODULE_CONSTANTS = new Set(['name', 'scope', 'identity']);
const RESOURCE_READABLE = new Set(['id', 'name', 'type', 'apiVersion']);
const MODULE_READABLE = new Set(['name', 'scope']);

// named returns the named children of a node.
function named(node) {
  return node.namedChildren;
}

function hasToken(node, text) {
  for (let i = 0; i < node.childCount; i++) {
    const c = node.child(i);
    if (!c.isNamed && c.type === text) return true;
  }
  return false;
}

// keyText is an object_property's key as written ('name', or 'a-b' for a
// quoted key); null for an interpolated key.
function keyText(prop) {
  const k = prop.namedChildren[0];
  if (!k) return null;
  if (k.type === 'identifier' || k.type === 'compatible_identifier') return k.text;
  if (k.type === 'string') {
    if (k.namedChildren.some((c) => c.type === 'interpolation')) return null;
    return k.namedChildren.map((c) => c.text).join('');
  }
  return null;
}

function propValue(prop) {
  const kids = prop.namedChildren.filter((c) => c.type !== 'comment');
  return kids[1] || null;
}

// stringValue is a plain string literal's value, or null.
function stringValue(node) {
  if (!node || node.type !== 'string') return null;
  if (node.namedChildren.some((c) => c.type === 'interpolation')) return null;
  return node.namedChildren.map((c) => (c.type === 'escape_sequence' ? c.text.slice(1) : c.text)).join('');
}

// bodyOf unwraps a declaration's value to its object: `= {…}`,
// `= if (c) {…}`, `= [for x in y: {…}]`, `= [for x in y: if (c) {…}]`.
// It returns { object, conditions: [expr], forStatement }.
function bodyOf(decl) {
  const out = { object: null, conditions: [], forStatement: null };
  let v = decl.namedChildren.find((c) => ['object', 'if_statement', 'for_statement'].includes(c.type));
  while (v) {
    if (v.type === 'object') {
      out.object = v;
      break;
    }
    if (v.type === 'if_statement') {
      const cond = v.namedChildren.find((c) => c.type === 'parenthesized_expression');
      if (cond) out.conditions.push(cond);
      v = v.namedChildren.find((c) => c.type === 'object');
      continue;
    }
    if (v.type === 'for_statement') {
      out.forStatement = v;
      v = v.childForFieldName('body');
      continue;
    }
    break;
  }
  return out;
}

// forParts returns a for_statement's loop names and its iterable.
function forParts(f) {
  const names = [];
  let iterable = null;
  let afterIn = false;
  for (let i = 0; i < f.childCount; i++) {
    const c = f.child(i);
    if (!c.isNamed) {
      if (c.type === 'in') afterIn = true;
      continue;
    }
    if (c === f.childForFieldName('body') || (f.childForFieldName('body') && c.id === f.childForFieldName('body').id)) break;
    if (!afterIn) {
      if (c.type === 'for_loop_parameters') {
        for (const p of c.namedChildren) names.push(p.text);
      } else if (c.type === 'identifier' || c.type === 'loop_variable') {
        names.push(c.text);
      }
    } else if (!iterable && c.type !== 'comment') {
      iterable = c;
    }
  }
  return { names, iterable };
}

// symbols collects a file's top-level (and nested resource) declarations.
function symbols(root) {
  const s = { params: new Map(), vars: new Map(), resources: new Map(), modules: new Map(), outputs: new Map() };
  const addResource = (decl, parent) => {
    const id = decl.namedChildren.find((c) => c.type === 'identifier');
    if (!id) return;
    const body = bodyOf(decl);
    s.resources.set(id.text, {
      decl, name: id.text, parent, existing: hasToken(decl, 'existing'),
      collection: !!body.forStatement, body,
    });
    if (body.object) {
      for (const p of body.object.namedChildren) {
        if (p.type !== 'object_property') continue;
        const nested = p.namedChildren.find((c) => c.type === 'resource_declaration');
        if (nested) addResource(nested, id.text);
      }
    }
  };
  for (const d of named(root)) {
    const id = d.namedChildren.find((c) => c.type === 'identifier');
    switch (d.type) {
      case 'parameter_declaration':
        if (id) s.params.set(id.text, d);
        break;
      case 'variable_declaration':
        if (id) s.vars.set(id.text, d);
        break;
      case 'resource_declaration':
        addResource(d, null);
        break;
      case 'module_declaration':
        if (id) s.modules.set(id.text, { decl: d, name: id.text, collection: !!bodyOf(d).forStatement, body: bodyOf(d) });
        break;
      case 'output_declaration':
        if (id) s.outputs.set(id.text, d);
        break;
    }
  }
  return s;
}

function varValue(decl) {
  const kids = decl.namedChildren.filter((c) => c.type !== 'comment' && c.type !== 'decorators');
  // [identifier, (type)?, value]
  return kids[kids.length - 1];
}

// Checker finds the runtime values a deploy-time-constant expression reads.
class Checker {
  constructor(sym) {
    this.sym = sym;
    this.runtimeExisting = new Map(); // resource name -> bool
    this.varReads = new Map(); // var name -> [violation] (memo); null while computing
  }

  // isRuntimeExisting: an existing resource whose name or scope is not a
  // deploy-time constant; Bicep then cannot read even its id or name early.
  isRuntimeExisting(name) {
    const r = this.sym.resources.get(name);
    if (!r || !r.existing) return false;
    if (this.runtimeExisting.has(name)) return this.runtimeExisting.get(name);
    this.runtimeExisting.set(name, false); // cycle guard
    let runtime = false;
    if (r.body.object) {
      for (const p of r.body.object.namedChildren) {
        if (p.type !== 'object_property') continue;
        const k = keyText(p);
        if (k === 'name' || k === 'scope' || k === 'parent') {
          if (this.reads(propValue(p), new Set(), k).length > 0) runtime = true;
        }
      }
    }
    this.runtimeExisting.set(name, runtime);
    return runtime;
  }

  // reads returns the violations in expr: [{node, what}]. locals are names
  // bound by enclosing lambdas or loops. container is the property name
  // (for scope/parent, where a whole resource is allowed).
  reads(expr, locals, container) {
    const out = [];
    if (!expr) return out;
    const visit = (n, locals) => {
      switch (n.type) {
        case 'lambda_expression': {
          const inner = new Set(locals);
          const kids = n.namedChildren;
          for (const k of kids.slice(0, -1)) {
            if (k.type === 'identifier') inner.add(k.text);
            for (const p of k.namedChildren) if (p.type === 'identifier') inner.add(p.text);
          }
          visit(kids[kids.length - 1], inner);
          return;
        }
        case 'for_statement': {
          const { names, iterable } = forParts(n);
          if (iterable) visit(iterable, locals);
          const inner = new Set([...locals, ...names]);
          const body = n.childForFieldName('body');
          if (body) visit(body, inner);
          return;
        }
        case 'object_property': {
          // Keys are not reads, except an interpolated key.
          const k = n.namedChildren[0];
          if (k && k.type === 'string') visit(k, locals);
          const v = propValue(n);
          if (v) visit(v, locals);
          return;
        }
        case 'call_expression': {
          const fn = n.childForFieldName('function');
          if (fn && fn.type === 'identifier' && !locals.has(fn.text) &&
              (fn.text === 'reference' || /^list/.test(fn.text))) {
            out.push({ node: n, what: fn.text + '() is evaluated while deploying' });
          }
          if (fn && fn.type !== 'identifier') visit(fn, locals);
          const args = n.childForFieldName('arguments');
          if (args) for (const a of args.namedChildren) visit(a, locals);
          return;
        }
        case 'member_expression':
        case 'subscript_expression': {
          const access = this.access(n, locals);
          if (access) {
            if (access.violation) out.push(access.violation);
            // Visit what is not the accessed symbol (index expressions).
            for (const idx of access.indexes) visit(idx, locals);
            return;
          }
          for (const c of n.namedChildren) visit(c, locals);
          return;
        }
        case 'resource_expression':
        case 'identifier': {
          const name = n.type === 'identifier' ? n.text : n.childForFieldName('resource').text;
          if (n.type === 'identifier' && locals.has(name)) return;
          const parent = n.parent;
          const isCallee = parent && parent.type === 'call_expression' && parent.childForFieldName('function') &&
            parent.childForFieldName('function').id === n.id;
          if (isCallee) return;
          if (this.sym.resources.has(name) || this.sym.modules.has(name)) {
            // A whole resource or module as a value.
            const isRes = this.sym.resources.has(name);
            if ((container === 'scope' || container === 'parent') && isRes) {
              if (this.isRuntimeExisting(name)) {
                out.push({ node: n, what: `existing resource ${name} has a name or scope known only while deploying` });
              }
              return;
            }
            out.push({ node: n, what: `the whole ${isRes ? 'resource' : 'module'} ${name} is known only while deploying` });
            return;
          }
          if (n.type === 'identifier' && this.sym.vars.has(name)) {
            for (const v of this.varViolations(name)) out.push({ node: n, what: `variable ${name}: ${v.what}` });
          }
          return;
        }
        default:
          for (const c of n.namedChildren) visit(c, locals);
      }
    };
    visit(expr, locals);
    return out;
  }

  // access resolves a member/subscript chain rooted at a resource or module
  // symbol: null when the root is not one; else the first violating step.
  access(n, locals) {
    const chain = [];
    let cur = n;
    while (cur.type === 'member_expression' || cur.type === 'subscript_expression') {
      chain.unshift(cur);
      cur = cur.childForFieldName('object');
      if (!cur) return null;
    }
    let name;
    if (cur.type === 'identifier') name = cur.text;
    else if (cur.type === 'resource_expression') name = cur.childForFieldName('resource').text;
    else return null;
    if (cur.type === 'identifier' && locals.has(name)) return null;
    const res = this.sym.resources.get(name);
    const mod = this.sym.modules.get(name);
    if (!res && !mod) return null;
    const indexes = [];
    let i = 0;
    const collection = res ? res.collection : mod.collection;
    if (collection && chain[0] && chain[0].type === 'subscript_expression') {
      indexes.push(chain[0].childForFieldName('index'));
      i = 1;
    }
    for (let j = i; j < chain.length; j++) {
      if (chain[j].type === 'subscript_expression') indexes.push(chain[j].childForFieldName('index'));
    }
    const step = chain[i];
    const kind = res ? 'resource' : 'module';
    if (!step) {
      return { violation: { node: n, what: `the whole ${kind} ${name} is known only while deploying` }, indexes };
    }
    let prop;
    if (step.type === 'member_expression') {
      prop = step.childForFieldName('property').text;
    } else {
      prop = stringValue(step.childForFieldName('index'));
      if (prop === null) {
        return { violation: { node: step, what: `${name}[…] with a computed property name is not a deploy-time constant` }, indexes };
      }
    }
    const readable = res ? RESOURCE_READABLE : MODULE_READABLE;
    if (!readable.has(prop)) {
      const only = res ? 'id, name, type, apiVersion' : 'name, scope';
      return { violation: { node: step, what: `${name}.${prop} is known only while deploying (of a ${kind} only ${only} are known at the start)` }, indexes };
    }
    if (res && this.isRuntimeExisting(name)) {
      return { violation: { node: step, what: `${name}.${prop}: existing resource ${name} has a name or scope known only while deploying` }, indexes };
    }
    return { violation: null, indexes };
  }

  varViolations(name) {
    if (this.varReads.has(name)) return this.varReads.get(name) || [];
    this.varReads.set(name, null); // cycle guard
    const v = this.reads(varValue(this.sym.vars.get(name)), new Set(), null);
    this.varReads.set(name, v);
    return v;
  }
}

// deployTimeConstants returns [{node, message}] for one parsed file.
function deployTimeConstants(root) {
  const sym = symbols(root);
  const ck = new Checker(sym);
  const out = [];
  const report = (vs, where) => {
    for (const v of vs) out.push({ node: v.node, message: `${where} must be known when the deployment starts (BCP120): ${v.what}` });
  };
  const checkBody = (kind, name, body, constants) => {
    for (const c of body.conditions) report(ck.reads(c, new Set(), null), `the condition of ${kind} ${name}`);
    let locals = new Set();
    if (body.forStatement) {
      const { names, iterable } = forParts(body.forStatement);
      report(ck.reads(iterable, new Set(), null), `the loop of ${kind} ${name}`);
      locals = new Set(names);
    }
    if (!body.object) return;
    for (const p of body.object.namedChildren) {
      if (p.type !== 'object_property') continue;
      const k = keyText(p);
      if (k === null || !constants.has(k)) continue;
      report(ck.reads(propValue(p), locals, k), `${k} of ${kind} ${name}`);
    }
  };
  for (const r of sym.resources.values()) {
    if (r.existing) {
      // Bicep validates only an existing resource's condition and loop.
      checkBody('resource', r.name, { conditions: r.body.conditions, forStatement: r.body.forStatement, object: null }, RESOURCE_CONSTANTS);
      continue;
    }
    checkBody('resource', r.name, r.body, RESOURCE_CONSTANTS);
  }
  for (const m of sym.modules.values()) checkBody('module', m.name, m.body, MODULE_CONSTANTS);
  // A variable's for-expression and for-body; any other for-expression.
  const visitFors = (n) => {
    if (n.type === 'for_statement') {
      const owner = n.parent;
      if (owner && (owner.type === 'resource_declaration' || owner.type === 'module_declaration')) {
        // handled above
      } else {
        const { names, iterable } = forParts(n);
        report(ck.reads(iterable, new Set(), null), 'a for expression');
        if (owner && owner.type === 'variable_declaration') {
          report(ck.reads(n.childForFieldName('body'), new Set(names), null), 'the for-body of variable ' + owner.namedChildren.find((c) => c.type === 'identifier').text);
        }
      }
    }
    if (n.type === 'if_statement' && n.parent && !['resource_declaration', 'module_declaration', 'for_statement'].includes(n.parent.type)) {
      const cond = n.namedChildren.find((c) => c.type === 'parenthesized_expression');
      report(ck.reads(cond, new Set(), null), 'a condition');
    }
    for (const c of n.namedChildren) visitFors(c);
  };
  visitFors(root);
  return out;
}

// moduleParams checks module declarations against the module files: every
// param given is declared, every param without a default is given, every
// output read exists. parse(file) returns a tree's root node.
function moduleParams(file, root, parse) {
  const sym = symbols(root);
  const out = [];
  const cache = new Map();
  const moduleSymbols = (rel) => {
    const p = path.join(path.dirname(file), rel);
    if (!cache.has(p)) {
      cache.set(p, fs.existsSync(p) ? symbols(parse(p)) : null);
    }
    return { p, s: cache.get(p) };
  };
  for (const m of sym.modules.values()) {
    const rel = stringValue(m.decl.namedChildren.find((c) => c.type === 'string'));
    if (rel === null) continue;
    const { p, s } = moduleSymbols(rel);
    if (!s) {
      out.push({ node: m.decl, message: `module ${m.name}: ${p} does not exist` });
      continue;
    }
    const given = new Set();
    const params = m.body.object && m.body.object.namedChildren.find((c) => c.type === 'object_property' && keyText(c) === 'params');
    const paramsObj = params && propValue(params);
    if (paramsObj && paramsObj.type === 'object') {
      for (const q of paramsObj.namedChildren) {
        if (q.type !== 'object_property') continue;
        const k = keyText(q);
        given.add(k);
        if (!s.params.has(k)) out.push({ node: q, message: `module ${m.name}: ${rel} declares no parameter ${k}` });
      }
    }
    for (const [k, d] of s.params) {
      const hasDefault = hasToken(d, '=');
      const nullable = d.namedChildren.some((c) => c.type === 'type' && c.text.endsWith('?'));
      if (!hasDefault && !nullable && !given.has(k)) {
        out.push({ node: m.decl, message: `module ${m.name}: required parameter ${k} of ${rel} is not given` });
      }
    }
    m.outputsDeclared = new Set(s.outputs.keys());
  }
  // Reads of module outputs anywhere in the file.
  const walk = (n) => {
    if (n.type === 'member_expression') {
      const obj = n.childForFieldName('object');
      const prop = n.childForFieldName('property');
      let base = obj;
      if (base && base.type === 'subscript_expression') base = base.childForFieldName('object');
      if (base && base.type === 'member_expression' && base.childForFieldName('property').text === 'outputs') {
        let root = base.childForFieldName('object');
        if (root && root.type === 'subscript_expression') root = root.childForFieldName('object');
        const m = root && root.type === 'identifier' && sym.modules.get(root.text);
        if (m && m.outputsDeclared && !m.outputsDeclared.has(prop.text)) {
          out.push({ node: n, message: `module ${m.name} has no output ${prop.text}` });
        }
      }
    }
    for (const c of n.namedChildren) walk(c);
  };
  walk(root);
  return out;
}

// declarations lists the resources and modules of one file.
function declarations(file, root) {
  const sym = symbols(root);
  const out = [];
  const typeOf = (r) => {
    const t = stringValue(r.decl.namedChildren.find((c) => c.type === 'string')) || '';
    const at = t.lastIndexOf('@');
    let type = at >= 0 ? t.slice(0, at) : t;
    let apiVersion = at >= 0 ? t.slice(at + 1) : '';
    if (r.parent) {
      const p = typeOf(sym.resources.get(r.parent));
      type = p.type + '/' + type;
      if (!apiVersion) apiVersion = p.apiVersion;
    }
    return { type, apiVersion };
  };
  const paths = (obj, prefix, acc, seen) => {
    for (const p of obj.namedChildren) {
      if (p.type !== 'object_property') continue;
      if (p.namedChildren.some((c) => c.type === 'resource_declaration')) continue;
      const k = keyText(p);
      const key = prefix + (k === null ? '*' : k);
      if (!prefix && (k === 'dependsOn')) continue;
      let v = propValue(p);
      // Follow a variable holding an object literal.
      while (v && v.type === 'identifier' && sym.vars.has(v.text) && !seen.has(v.text)) {
        seen = new Set([...seen, v.text]);
        v = varValue(sym.vars.get(v.text));
      }
      if (v && v.type === 'object' && v.namedChildren.some((c) => c.type === 'object_property')) {
        paths(v, key + '.', acc, seen);
      } else if (v && v.type === 'array' && v.namedChildren.some((c) => c.type === 'object')) {
        for (const item of v.namedChildren) if (item.type === 'object') paths(item, key + '[].', acc, seen);
      } else {
        acc.add(key);
      }
    }
    return acc;
  };
  for (const r of sym.resources.values()) {
    const { type, apiVersion } = typeOf(r);
    out.push({
      file, line: r.decl.startPosition.row + 1, kind: 'resource', symbol: r.name, type, apiVersion,
      existing: r.existing, properties: r.body.object ? [...paths(r.body.object, '', new Set(), new Set())].sort() : [],
    });
  }
  for (const m of sym.modules.values()) {
    out.push({
      file, line: m.decl.startPosition.row + 1, kind: 'module', symbol: m.name,
      path: stringValue(m.decl.namedChildren.find((c) => c.type === 'string')),
      properties: m.body.object ? [...paths(m.body.object, '', new Set(), new Set())].sort() : [],
    });
  }
  return out;
}

module.exports = { deployTimeConstants, moduleParams, declarations, symbols };
