// kvaudit's web page: a vault's activity from the query API. No library,
// no inline script, no eval; every value from the logs reaches the page
// as text (textContent, setAttribute), never as HTML. The view's state is
// the URL's fragment, so a view can be shared (the fragment never reaches
// a server). The function key comes in the page's query string (?code=),
// which the page's two asset URLs repeat; the API calls send it as the
// x-functions-key header, never in a URL, so it is in no API request line
// (proxies', the host's and storage logs) and in no link. The CSV download
// and the status and API links are fetched with the header too and handed
// to the browser as blobs: a link or a navigation cannot send a header.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const code = new URLSearchParams(location.search).get('code') || '';
  const FILTERS = ['operation', 'status', 'caller', 'ip', 'object'];
  const PRESETS = { '24h': 24, '7d': 7 * 24, '30d': 30 * 24 };
  const HOUR = 3600 * 1000;
  const PAGE = 50;
  const TOP = 10;

  // url is an API path relative to the page (/api/audit/ui → /api/audit/x)
  // with the query q; never the key (see get).
  function url(path, q) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(q || {})) if (v !== '' && v !== undefined) u.set(k, v);
    const s = u.toString();
    return s ? path + '?' + s : path;
  }

  // get fetches an API path with the key in the x-functions-key header, as
  // the host and the standalone handler take it; a failure throws the
  // API's error message.
  async function get(path, q, signal, accept) {
    const headers = { Accept: accept || 'application/json' };
    if (code) headers['x-functions-key'] = code;
    const res = await fetch(url(path, q), { signal, headers, cache: 'no-store' });
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      throw new Error((body && body.error) || res.status + ' ' + res.statusText);
    }
    return res;
  }

  async function getJSON(path, q, signal) {
    return (await get(path, q, signal)).json();
  }

  // handOver gives the browser an API answer fetched with the key: saved
  // as a file when name is given, else opened in a new tab (win, opened
  // at the click, while the browser still counts it as the user's). The
  // blob's URL is revoked once the browser has had it.
  async function handOver(path, q, accept, name, win) {
    try {
      const blob = await (await get(path, q, undefined, accept)).blob();
      const href = URL.createObjectURL(blob);
      if (win) {
        win.location.href = href;
      } else {
        const a = el('a', { href, download: name, hidden: '' });
        document.body.appendChild(a);
        a.click();
        a.remove();
      }
      setTimeout(() => URL.revokeObjectURL(href), 60 * 1000);
    } catch (err) {
      if (win) win.close();
      message('The download failed: ' + (err.message || err));
    }
  }

  // apiLink makes link open its API path with the key: in a new tab, or
  // saved under its download name.
  function apiLink(link, path, accept) {
    link.setAttribute('href', path);
    link.addEventListener('click', (e) => {
      e.preventDefault();
      const q = link.dataset.query ? Object.fromEntries(new URLSearchParams(link.dataset.query)) : {};
      let name = link.getAttribute('download');
      let win = null;
      if (!name) {
        win = window.open('', '_blank');
        if (win) win.opener = null;
        else name = path.endsWith('.json') ? path : path + '.json'; // no new tab: a file
      }
      handOver(path, q, accept, name, win);
    });
  }

  // el makes an element with attributes and text (never HTML).
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function fail(e, err) { clear(e); e.appendChild(el('p', { class: 'error' }, String(err.message || err))); }
  function isAbort(err) { return err && err.name === 'AbortError'; }

  // ---- state: the fragment ------------------------------------------------

  function readState() {
    const h = new URLSearchParams(location.hash.slice(1));
    const s = { vault: h.get('vault') || '', window: h.get('window') || '24h', from: h.get('from') || '', to: h.get('to') || '', det: h.get('det') || '' };
    for (const f of FILTERS) s[f] = h.get(f) || '';
    if (!(s.window in PRESETS) && s.window !== 'custom') s.window = '24h';
    return s;
  }
  function stateHash(s) {
    const h = new URLSearchParams();
    for (const k of ['vault', 'window', 'from', 'to', 'det', ...FILTERS]) {
      if (s[k] && !(k === 'window' && s[k] === '24h') && !((k === 'from' || k === 'to') && s.window !== 'custom')) h.set(k, s[k]);
    }
    return '#' + h.toString();
  }
  function go(s) {
    const hash = stateHash(s);
    if (hash === location.hash || (hash === '#' && location.hash === '')) render();
    else location.hash = hash;
  }
  function withChange(change) { return Object.assign(readState(), change); }

  // windowOf is the state's window: a preset ends at the next whole hour,
  // so that stats read only whole hours (the cheap per-hour counts) and
  // the chart's last bar is the current hour.
  function windowOf(s) {
    if (s.window === 'custom') {
      const from = new Date(s.from), to = new Date(s.to);
      if (isNaN(from) || isNaN(to)) throw new Error('Give a custom window: from and to, in UTC.');
      return { from, to };
    }
    const to = new Date(Math.floor(Date.now() / HOUR) * HOUR + HOUR);
    return { from: new Date(to - PRESETS[s.window] * HOUR), to };
  }
  const iso = (d) => d.toISOString().replace('.000Z', 'Z');
  const localInput = (d) => d.toISOString().slice(0, 16);

  // selector is what the API reads: the vault, or across vaults the
  // caller, IP or object (the lookup tables).
  function selector(s) {
    if (s.vault) return { vault: s.vault };
    const q = {};
    for (const k of ['caller', 'ip', 'object']) if (s[k]) q[k] = s[k];
    return q;
  }

  // ---- controls -------------------------------------------------------------

  let vaults = null;
  function syncControls(s) {
    $('vault').value = s.vault;
    $('window').value = s.window;
    $('custom').hidden = s.window !== 'custom';
    if (s.window === 'custom') {
      if (s.from) $('from').value = localInput(new Date(s.from));
      if (s.to) $('to').value = localInput(new Date(s.to));
    }
    for (const f of FILTERS) $('f-' + f).value = s[f];
    $('across').disabled = !(s.vault && (s.caller || s.ip || s.object));
  }
  function inputTime(id) {
    const v = $(id).value;
    return v ? iso(new Date(v + 'Z')) : '';
  }

  $('vault').addEventListener('change', () => go(withChange({ vault: $('vault').value })));
  $('window').addEventListener('change', () => {
    const w = $('window').value;
    if (w !== 'custom') return go(withChange({ window: w }));
    const cur = windowOf(readState());
    go(withChange({ window: 'custom', from: iso(cur.from), to: iso(cur.to) }));
  });
  $('controls').addEventListener('submit', (e) => {
    e.preventDefault();
    go(withChange({ window: 'custom', from: inputTime('from'), to: inputTime('to') }));
  });
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    const change = {};
    for (const f of FILTERS) change[f] = $('f-' + f).value.trim();
    go(withChange(change));
  });
  $('clear').addEventListener('click', () => {
    const change = {};
    for (const f of FILTERS) change[f] = '';
    go(withChange(change));
  });
  $('across').addEventListener('click', () => go(withChange({ vault: '' })));
  $('first').addEventListener('click', () => loadEvents(cur.q, ''));
  $('next').addEventListener('click', () => { if (cur.next) loadEvents(cur.q, cur.next); });
  window.addEventListener('hashchange', render);

  // filterButton is a value from the logs that sets a filter when clicked.
  function filterButton(dim, value, label) {
    const b = el('button', { type: 'button', class: 'link', 'data-filter': dim }, label === undefined ? value : label);
    b.addEventListener('click', () => go(withChange({ [dim]: value })));
    return b;
  }

  // ---- the chart: requests per hour by outcome, from stats ----------------

  // drawChart draws one bar group per hour of the window, stacked 2xx, 4xx,
  // 5xx and other (total less the three), as hand-written SVG.
  function drawChart(w, series) {
    const box = $('chart');
    clear(box);
    const first = Math.floor(w.from / HOUR) * HOUR;
    const hours = [];
    for (let t = first; t < w.to.getTime(); t += HOUR) hours.push(t);
    const rows = hours.map((t) => {
      const key = iso(new Date(t));
      const c = { key, c2xx: series['2xx'].get(key) || 0, c4xx: series['4xx'].get(key) || 0, c5xx: series['5xx'].get(key) || 0 };
      c.total = series.all.get(key) || 0;
      c.other = Math.max(0, c.total - c.c2xx - c.c4xx - c.c5xx);
      return c;
    });
    const max = Math.max(1, ...rows.map((r) => Math.max(r.total, r.c2xx + r.c4xx + r.c5xx)));
    const W = 960, H = 220, L = 44, B = 22, T = 8;
    const plotH = H - B - T, bw = (W - L) / Math.max(1, rows.length);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
    for (const f of [0, 0.5, 1]) {
      const y = T + plotH * (1 - f);
      root.appendChild(svg('line', { class: 'grid', x1: L, x2: W, y1: y, y2: y }));
      root.appendChild(svg('text', { class: 'axis', x: L - 4, y: y + 4, 'text-anchor': 'end' }, String(Math.round(max * f))));
    }
    // About eight labels: every few hours, or at midnight every few days.
    const long = rows.length > 48;
    const step = long ? Math.ceil(rows.length / 24 / 8) : Math.ceil(rows.length / 8);
    rows.forEach((r, i) => {
      const x = L + i * bw;
      const g = svg('g', { class: 'bar', 'data-hour': r.key, 'data-2xx': r.c2xx, 'data-4xx': r.c4xx, 'data-5xx': r.c5xx, 'data-other': r.other, 'data-total': r.total });
      g.appendChild(svg('title', {}, `${r.key.slice(0, 13).replace('T', ' ')}:00 UTC — ${r.total} requests: 2xx ${r.c2xx}, 4xx ${r.c4xx}, 5xx ${r.c5xx}` + (r.other ? `, other ${r.other}` : '')));
      g.appendChild(svg('rect', { x, y: T, width: bw, height: plotH, fill: 'transparent' }));
      let y = T + plotH;
      for (const [cls, n] of [['s2xx', r.c2xx], ['s4xx', r.c4xx], ['s5xx', r.c5xx], ['sother', r.other]]) {
        if (!n) continue;
        const h = (n / max) * plotH;
        y -= h;
        g.appendChild(svg('rect', { class: cls, x: x + bw * 0.1, y, width: Math.max(0.5, bw * 0.8), height: h }));
      }
      g.addEventListener('click', () => go(withChange({ window: 'custom', from: r.key, to: iso(new Date(Date.parse(r.key) + HOUR)) })));
      root.appendChild(g);
      const d = new Date(Date.parse(r.key));
      if (long ? d.getUTCHours() === 0 && Math.floor(d / (24 * HOUR)) % step === 0 : i % step === 0) {
        const label = long ? r.key.slice(5, 10) : r.key.slice(11, 16);
        root.appendChild(svg('text', { class: 'axis', x, y: H - 6 }, label));
      }
    });
    box.appendChild(root);
    const total = rows.reduce((n, r) => n + r.total, 0);
    $('chart-total').textContent = `${total} requests, ${rows.length} hours`;
  }

  async function loadChart(s, w, signal) {
    const base = Object.assign(selector(s), { from: iso(w.from), to: iso(w.to), by: 'hour', limit: 1000 });
    const asked = performance.now();
    const [all, s2, s4, s5] = await Promise.all(['', '2xx', '4xx', '5xx'].map((status) => getJSON('stats', Object.assign({ status }, base), signal)));
    const answered = performance.now();
    const map = (st) => new Map(st.groups.map((g) => [g.key, g.count]));
    drawChart(w, { all: map(all), '2xx': map(s2), '4xx': map(s4), '5xx': map(s5) });
    const drawn = performance.now();
    // For the browser test: how long the API took and the chart after it.
    $('chart').setAttribute('data-api-ms', (answered - asked).toFixed(1));
    $('chart').setAttribute('data-draw-ms', (drawn - answered).toFixed(1));
  }

  // ---- top operations, callers, IPs, objects ------------------------------

  async function loadTop(s, w, dim, signal) {
    const list = $('top-' + dim);
    const st = await getJSON('stats', Object.assign(selector(s), { from: iso(w.from), to: iso(w.to), by: dim, limit: TOP }), signal);
    clear(list);
    if (!st.groups.length) list.appendChild(el('li', { class: 'note' }, 'none'));
    for (const g of st.groups) {
      const li = el('li');
      li.appendChild(g.key === '-' ? el('span', {}, '(none)') : filterButton(dim, g.key));
      li.appendChild(el('span', { class: 'count' }, String(g.count)));
      list.appendChild(li);
    }
  }

  // ---- detections -----------------------------------------------------------

  const KIND = {
    massSecretRetrieval: 'mass secret retrieval', sensitiveOperation: 'sensitive operation',
    refusedAccess: 'refused access', oldTls: 'old TLS', slowRequests: 'slow requests', accessAnomaly: 'access anomaly',
  };
  // findingState is the view of a finding's events: its vault, caller, IP,
  // object and operation, from its first to just after its last event.
  function findingState(s, f) {
    const first = Date.parse(f.first), last = Date.parse(f.last);
    const st = { vault: f.vault || s.vault, window: 'custom', from: iso(new Date(Math.floor(first / 1000) * 1000)), to: iso(new Date(Math.floor(last / 1000) * 1000 + 1000)) };
    for (const k of FILTERS) st[k] = '';
    if (f.caller && f.caller !== '-') st.caller = f.caller;
    if (f.ip) st.ip = f.ip;
    if (f.object) st.object = f.object;
    if (f.operation) st.operation = f.operation;
    if (f.kind === 'refusedAccess') st.status = '401,403';
    if (f.kind === 'massSecretRetrieval') { st.operation = 'SecretGet,KeyGet,VaultGet'; st.status = '2xx'; st.vault = ''; }
    if (f.kind === 'sensitiveOperation') st.status = '2xx';
    return st;
  }
  async function loadDetections(s, w, signal) {
    const box = $('detections');
    if (!s.vault) { clear(box); box.appendChild(el('p', { class: 'note' }, 'Choose a vault to see its detections.')); return; }
    // Detections read event rows (a busy caller's every get, for mass
    // retrieval), which a long window on a busy vault can take past the
    // API's row limit: a window over a day shows its last day unless the
    // whole window is asked for (det=all).
    const long = w.to - w.from > 24 * HOUR;
    const span = long && s.det !== 'all' ? { from: new Date(w.to - 24 * HOUR), to: w.to } : w;
    const d = await getJSON('detections', { vault: s.vault, from: iso(span.from), to: iso(span.to) }, signal);
    clear(box);
    if (long) {
      const p = el('p', { class: 'note' }, s.det === 'all' ? 'The whole window. ' : 'The last 24 hours of the window. ');
      const b = el('button', { type: 'button', class: 'link', id: 'det-span' }, s.det === 'all' ? 'Only the last 24 hours' : 'The whole window (slower on a busy vault)');
      b.addEventListener('click', () => go(withChange({ det: s.det === 'all' ? '' : 'all' })));
      p.appendChild(b);
      box.appendChild(p);
    }
    box.appendChild(el('p', { class: 'summary' }, Object.entries(d.summary).map(([k, n]) => `${KIND[k] || k}: ${n}`).join(' · ')));
    if (!d.findings.length) { box.appendChild(el('p', { class: 'note' }, 'No findings in this window.')); return; }
    const ul = el('ul', { class: 'detections' });
    for (const f of d.findings) {
      const li = el('li', { 'data-kind': f.kind });
      li.appendChild(el('span', { class: 'kind' }, KIND[f.kind] || f.kind));
      const what = [f.operation, f.caller && f.caller !== '-' ? 'by ' + f.caller : '', f.ip ? 'from ' + f.ip : '', f.object ? 'on ' + f.object : '',
        f.tlsVersion, f.day, f.maxDurationMs ? 'max ' + f.maxDurationMs + ' ms' : '',
        f.anomaly ? `${f.anomaly.series} from ${f.anomaly.start.slice(0, 16).replace('T', ' ')}, baseline ${f.anomaly.baseline}, score ${f.anomaly.score}` : ''].filter(Boolean).join(' ');
      li.appendChild(el('span', {}, `${what} — ${f.count} events, ${f.first.slice(0, 19).replace('T', ' ')} to ${f.last.slice(0, 19).replace('T', ' ')} `));
      const a = el('a', { href: stateHash(findingState(s, f)), class: 'events-link' }, 'events');
      li.appendChild(a);
      ul.appendChild(li);
    }
    box.appendChild(ul);
    if (d.truncated) box.appendChild(el('p', { class: 'note' }, 'More findings than shown: narrow the window.'));
  }

  // ---- alerts: what was pushed for the window, and how each sink took it ----

  async function loadAlerts(s, w, signal) {
    const box = $('alerts');
    const q = { from: iso(w.from), to: iso(w.to) };
    if (s.vault) q.vault = s.vault;
    const d = await getJSON('alerts', q, signal);
    clear(box);
    if (!d.sinks.length) box.appendChild(el('p', { class: 'note' }, 'No sink is configured (AlertWebhookUrl, AlertTeamsUrl, AlertEventGridTopicEndpoint): alerts are recorded here, not sent.'));
    if (!d.alerts.length) { box.appendChild(el('p', { class: 'note' }, 'No alerts in this window.')); return; }
    const ul = el('ul', { class: 'detections alerts' });
    for (const a of d.alerts) {
      const li = el('li', { 'data-kind': a.kind, 'data-state': a.state });
      li.appendChild(el('span', { class: 'state state-' + a.state }, a.state));
      li.appendChild(el('span', { class: 'kind' }, (KIND[a.kind] || a.kind) + ' · ' + a.severity));
      const sinks = Object.entries(a.sinks || {}).map(([n, st]) => `${n}: ${st.state}${st.attempts > 1 ? ' after ' + st.attempts + ' attempts' : ''}${st.error ? ' (' + st.error + ')' : ''}`).join('; ');
      li.appendChild(el('span', {}, `${a.title} — detected ${a.detectedAt.slice(0, 19).replace('T', ' ')}${sinks ? '; ' + sinks : ''} `));
      if (a.finding) li.appendChild(el('a', { href: stateHash(findingState(s, a.finding)), class: 'events-link' }, 'events'));
      ul.appendChild(li);
    }
    box.appendChild(ul);
    if (d.truncated) box.appendChild(el('p', { class: 'note' }, 'More alerts than shown: narrow the window.'));
  }

  // ---- events: filters, pages by continuation, CSV -------------------------

  let cur = { q: null, next: '', page: 0, ctrl: null };
  function eventsQuery(s, w) {
    const q = Object.assign(selector(s), { from: iso(w.from), to: iso(w.to) });
    for (const f of FILTERS) if (s[f]) q[f] = s[f];
    return q;
  }
  function callerOf(ev) {
    const id = ev.identity || {};
    return id.upn || id.objectId || id.appId || '';
  }
  function eventRow(ev) {
    const tr = el('tr', { 'data-key': ev.source ? ev.source.blob + '#' + ev.source.offset : '' });
    tr.appendChild(el('td', { class: 'time' }, (ev.time || '').slice(0, 19).replace('T', ' ')));
    tr.appendChild(el('td', {}, ev.vault || ''));
    const op = el('td'); if (ev.operationName) op.appendChild(filterButton('operation', ev.operationName)); tr.appendChild(op);
    const st = ev.status || 0;
    const status = el('td', { class: 'num st' + Math.floor(st / 100) }); if (st) status.appendChild(filterButton('status', String(st))); tr.appendChild(status);
    const caller = el('td', { class: 'caller' }); const c = callerOf(ev); if (c) caller.appendChild(filterButton('caller', c)); tr.appendChild(caller);
    const ip = el('td'); if (ev.callerIpAddress) ip.appendChild(filterButton('ip', ev.callerIpAddress)); tr.appendChild(ip);
    const obj = el('td', { class: 'object' }); if (ev.objectName) obj.appendChild(filterButton('object', ev.objectName)); tr.appendChild(obj);
    tr.appendChild(el('td', { class: 'num' }, ev.durationMs === null || ev.durationMs === undefined ? '' : String(ev.durationMs)));
    return tr;
  }
  // labelCells names each cell after its column, for the phone layout.
  const COLUMNS = ['time', 'vault', 'operation', 'status', 'caller', 'IP', 'object', 'ms'];
  function labelCells(body) {
    for (const tr of body.rows) [...tr.cells].forEach((td, i) => { if (tr.cells.length > 1) td.setAttribute('data-label', COLUMNS[i]); });
  }

  // loadEvents shows the page at token (the first page when ''); a page
  // may be empty with a continuation (the API's time budget): a few are
  // followed at once, so that a click shows events.
  async function loadEvents(q, token) {
    const first = !token;
    if (cur.ctrl) cur.ctrl.abort();
    const ctrl = new AbortController();
    cur.ctrl = ctrl;
    const body = $('events').tBodies[0];
    $('next').disabled = true;
    $('pageinfo').textContent = 'loading…';
    try {
      let page, hops = 0;
      do {
        page = await getJSON('events', Object.assign({}, q, { limit: PAGE, continuation: token }), ctrl.signal);
        token = page.continuation || '';
      } while (!page.events.length && token && ++hops < 5);
      cur.page = first ? 1 : cur.page + 1;
      cur.q = q;
      cur.next = token;
      clear(body);
      for (const ev of page.events) body.appendChild(eventRow(ev));
      labelCells(body);
      if (!page.events.length) {
        const tr = el('tr'); tr.appendChild(el('td', { colspan: '8', class: 'note' }, token ? 'No events on these pages yet: follow Next page.' : 'No events match.'));
        body.appendChild(tr);
      }
      $('next').disabled = !token;
      $('first').disabled = first;
      $('pageinfo').textContent = `page ${cur.page}: ${page.events.length} events` + (token ? '' : ' (last page)');
    } catch (err) {
      if (isAbort(err)) return;
      clear(body);
      const tr = el('tr'); tr.appendChild(el('td', { colspan: '8', class: 'error' }, String(err.message || err))); body.appendChild(tr);
      $('pageinfo').textContent = '';
    }
  }

  // ---- logs accounts: one per region, their lag and errors -----------------

  // vaultLabel names a vault in the picker with where its logs come from:
  // its region(s) and subscription.
  function vaultLabel(d) {
    const where = [];
    if (d.regions && d.regions.length) where.push(d.regions.join(', '));
    if (d.subscription) where.push('subscription ' + d.subscription.slice(0, 8) + '…');
    return where.length ? `${d.name} (${where.join(' · ')})` : d.name;
  }

  // loadAccounts draws indexing status per logs account (region), once per
  // page: the recent hours' blobs, bytes not yet indexed, blobs failing.
  async function loadAccounts() {
    const box = $('accounts');
    const st = await getJSON('status');
    clear(box);
    const accts = st.accounts || [];
    if (!accts.length) { box.appendChild(el('p', { class: 'note' }, 'No logs account reported.')); return; }
    const table = el('table', { class: 'accounts' });
    const head = el('tr');
    for (const h of ['account', 'region', 'vaults', 'recent blobs', 'bytes to index', 'failing', 'error']) head.appendChild(el('th', {}, h));
    table.appendChild(el('thead')).appendChild(head);
    const body = table.appendChild(el('tbody'));
    for (const a of accts) {
      const tr = el('tr');
      tr.appendChild(el('td', {}, a.account || '-'));
      tr.appendChild(el('td', {}, a.region || '-'));
      for (const n of [a.vaults, a.blobs, a.lagBytes, a.failing]) tr.appendChild(el('td', { class: 'num' }, String(n || 0)));
      tr.appendChild(el('td', { class: a.error ? 'error' : '' }, a.error || ''));
      body.appendChild(tr);
    }
    box.appendChild(el('div', { class: 'table-wrap' })).appendChild(table);
  }

  // ---- the whole view -------------------------------------------------------

  let viewCtrl = null;
  let renders = 0;
  let accountsLoaded = null; // the logs accounts panel, drawn once
  function panel(promise, box) {
    return promise.catch((err) => { if (!isAbort(err)) fail(box, err); });
  }
  function message(text) { $('message').textContent = text; $('message').hidden = !text; }

  async function render() {
    const s = readState();
    $('loading').hidden = true;
    if (vaults === null) {
      let list;
      try {
        list = await getJSON('vaults');
      } catch (err) {
        message('The API did not answer: ' + (err.message || err));
        return;
      }
      vaults = list.vaults;
      const details = {};
      for (const d of list.details || []) details[d.name] = d;
      for (const v of vaults) $('vault').appendChild(el('option', { value: v }, details[v] ? vaultLabel(details[v]) : v));
      if (vaults.length) accountsLoaded = panel(loadAccounts(), $('accounts'));
    }
    if (!vaults.length) {
      $('empty').hidden = false; $('view').hidden = true; message('');
      return;
    }
    if (!s.vault && !s.caller && !s.ip && !s.object) {
      if (renders === 0 && !location.hash) {
        // A bare URL opens the first vault.
        s.vault = vaults[0];
        history.replaceState(null, '', stateHash(s));
      } else {
        // "All vaults" needs a key to look up.
        syncControls(s);
        $('empty').hidden = true; $('view').hidden = false;
        for (const id of ['chart', 'detections', 'alerts', 'top-operation', 'top-caller', 'top-ip', 'top-object']) clear($(id));
        clear($('events').tBodies[0]);
        $('csv').hidden = true; $('next').disabled = true; $('first').disabled = true; $('pageinfo').textContent = '';
        message('Across every vault: give a caller, IP or object in the filters of the events.');
        document.body.setAttribute('data-ready', String(++renders));
        return;
      }
    }
    if (s.vault && !vaults.includes(s.vault.toLowerCase())) {
      const opt = el('option', { value: s.vault }, s.vault + ' (not indexed)');
      $('vault').appendChild(opt);
    }
    syncControls(s);
    let w;
    try { w = windowOf(s); } catch (err) { message(err.message); return; }
    message('');
    $('empty').hidden = true; $('view').hidden = false;
    $('chart-title').textContent = s.vault
      ? `Requests per hour to ${s.vault}, all callers`
      : 'Requests per hour, every vault: ' + Object.entries(selector(s)).map(([k, v]) => `${k} ${v}`).join(', ');
    const csvName = 'kvaudit-' + (s.vault || 'lookup') + '-events.csv';
    if (viewCtrl) viewCtrl.abort();
    viewCtrl = new AbortController();
    const signal = viewCtrl.signal;
    const q = eventsQuery(s, w);
    $('csv').hidden = false;
    const csvQuery = Object.assign({}, q, { format: 'csv', limit: 1000 });
    $('csv').dataset.query = new URLSearchParams(csvQuery).toString();
    $('csv').setAttribute('href', url('events', csvQuery)); // without the key: see apiLink
    $('csv').setAttribute('download', csvName);
    await Promise.all([
      panel(loadChart(s, w, signal), $('chart')),
      ...['operation', 'caller', 'ip', 'object'].map((dim) => panel(loadTop(s, w, dim, signal), $('top-' + dim))),
      panel(loadDetections(s, w, signal), $('detections')),
      panel(loadAlerts(s, w, signal), $('alerts')),
      loadEvents(q, ''),
      accountsLoaded,
    ]);
    document.body.setAttribute('data-ready-ms', performance.now().toFixed(0));
    document.body.setAttribute('data-ready', String(++renders));
  }

  for (const id of ['status-link', 'status-link2']) apiLink($(id), 'status', 'application/json');
  apiLink($('openapi-link'), 'openapi.json', 'application/json');
  apiLink($('csv'), 'events', 'text/csv');
  render();
})();
