// The Usageflow portal: one page for vendors and distributors (providers).
//
// Every action goes through the public API (/public/v1) with the API key the user logged in
// with, kept in this tab's session storage only; the server decides what the key may see and
// do, so the portal shows exactly what the API allows. No library, no build step: the page
// is served as written. Quantities and amounts are shown exactly as the API sends them
// (decimal strings); only the plots turn them into pixel positions.

const API = '/public/v1';
const KEY = 'usageflow.api-key';
const PAGE = 25;
const COLORS = ['#1f5fbf', '#d92d20', '#039855', '#dc6803', '#7a5af8', '#0e9384', '#c11574', '#475467'];

const state = { key: sessionStorage.getItem(KEY), me: null, timer: null };

// ---------------------------------------------------------------------------------------------
// DOM helpers: elements are built, never parsed from strings, so data cannot inject markup.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') el.style.cssText = v; // CSSOM, which the page's CSP allows
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...nodes) {
  const main = document.getElementById('main');
  main.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

function banner(message) {
  const b = document.getElementById('banner');
  b.textContent = message || '';
  b.hidden = !message;
}

function notice(message) {
  const n = document.getElementById('notice');
  n.textContent = message || '';
  n.hidden = !message;
  if (message) setTimeout(() => { if (n.textContent === message) n.hidden = true; }, 6000);
}

const badge = (status) => h('span', { class: `badge ${status || ''}`, dataset: { status: status || '' } }, status || '—');
const day = (t) => (t ? String(t).slice(0, 10) : '');
const when = (t) => (t ? String(t).replace('T', ' ').replace(/(\.\d+)?(Z|\+00:00)$/, ' UTC') : '');
const link = (hash, text, attrs) => h('a', { href: hash, ...(attrs || {}) }, text);

function table(columns, rows, attrs) {
  return h('table', attrs || {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null }, c.title)))),
    h('tbody', {}, rows.length
      ? rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(r)))))
      : h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'Nothing here.'))));
}

// ---------------------------------------------------------------------------------------------
// The API.

class ApiError extends Error {
  constructor(status, code, errors) {
    super(`${errors.join('; ')} (${code}, HTTP ${status})`);
    this.status = status;
    this.code = code;
  }
}

async function call(path, { method = 'GET', json, form, raw } = {}) {
  const headers = { Authorization: `ApiKey ${state.key}` };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const res = await fetch(API + path, { method, headers, body });
  if (!res.ok) {
    let code = `HTTP_${res.status}`;
    let errors = [res.statusText || 'request failed'];
    try {
      const e = await res.json();
      code = e.error_code || code;
      errors = e.errors || errors;
    } catch (_) { /* not JSON */ }
    if (res.status === 401) logout();
    throw new ApiError(res.status, code, errors);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/// A paged listing: the page and the total from Content-Range.
async function list(path, params, offset) {
  const q = [...params, `limit=${PAGE}`, `offset=${offset || 0}`].join('&');
  const res = await call(`${path}?${q}`, { raw: true });
  const range = res.headers.get('Content-Range') || '';
  const total = Number((range.match(/\/(\d+)$/) || [])[1] || 0);
  return { items: await res.json(), total, offset: offset || 0 };
}

/// Downloads a file the API serves (with the key, so not by a plain link).
async function download(path, fallbackName) {
  const res = await call(path, { raw: true });
  const cd = res.headers.get('Content-Disposition') || '';
  const name = (cd.match(/filename="([^"]+)"/) || [])[1] || fallbackName;
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  notice(`Downloaded ${name}`);
  return { name, size: blob.size, records: res.headers.get('X-Record-Count') };
}

/// Runs an action with its errors in the banner; returns its result or undefined.
async function act(fn) {
  banner('');
  try {
    return await fn();
  } catch (e) {
    banner(e.message);
    return undefined;
  }
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------
// Plots (SVG, drawn here: nothing is fetched from elsewhere).

function barChart(rows, { label, value, title, testid }) {
  const data = rows.map((r) => ({ label: label(r), text: value(r), v: Number(value(r)) || 0 })).slice(0, 20);
  const max = Math.max(1e-12, ...data.map((d) => Math.abs(d.v)));
  const bar = 22;
  const width = 640;
  const left = 200;
  const height = data.length * bar + 10;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${Math.max(height, 40)}`, role: 'img', 'aria-label': title, 'data-testid': testid || 'bar-chart' },
    data.map((d, i) => [
      s('text', { x: left - 6, y: i * bar + 16, 'text-anchor': 'end' }, d.label.length > 30 ? `${d.label.slice(0, 29)}…` : d.label),
      s('rect', { x: left, y: i * bar + 4, width: Math.max(1, (Math.abs(d.v) / max) * (width - left - 110)), height: bar - 8, fill: COLORS[0], rx: 2 },
        s('title', {}, `${d.label}: ${d.text}`)),
      s('text', { x: left + Math.max(1, (Math.abs(d.v) / max) * (width - left - 110)) + 6, y: i * bar + 16 }, d.text),
    ]));
  return h('figure', { class: 'card' }, h('figcaption', {}, h('b', {}, title)), data.length ? svg : h('p', { class: 'muted' }, 'No data.'));
}

function lineChart(points, { title, testid }) {
  // points: [{x: 'YYYY-MM-DD…', series: name, y: 'decimal'}]
  const xs = [...new Set(points.map((p) => p.x))].sort();
  const names = [...new Set(points.map((p) => p.series))];
  const width = 720;
  const height = 260;
  const pad = { l: 60, r: 16, t: 12, b: 40 };
  const ymax = Math.max(1e-12, ...points.map((p) => Number(p.y) || 0));
  const X = (i) => pad.l + (xs.length <= 1 ? (width - pad.l - pad.r) / 2 : (i * (width - pad.l - pad.r)) / (xs.length - 1));
  const Y = (v) => height - pad.b - (v / ymax) * (height - pad.t - pad.b);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * ymax);
  const every = Math.max(1, Math.ceil(xs.length / 8));
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, 'data-testid': testid || 'line-chart' },
    ticks.map((t) => [
      s('line', { class: 'axis', x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t) }),
      s('text', { x: pad.l - 6, y: Y(t) + 4, 'text-anchor': 'end' }, Number(t.toPrecision(4)).toLocaleString()),
    ]),
    xs.map((x, i) => (i % every === 0 ? s('text', { x: X(i), y: height - pad.b + 16, 'text-anchor': 'middle' }, x.slice(5, 16).replace('T00:00', '').replace('T', ' ')) : null)),
    names.map((name, n) => {
      const series = xs.map((x, i) => {
        const p = points.find((q) => q.x === x && q.series === name);
        return p ? { i, v: Number(p.y) || 0, text: p.y } : null;
      }).filter(Boolean);
      const color = COLORS[n % COLORS.length];
      return [
        s('polyline', { fill: 'none', stroke: color, 'stroke-width': 2, points: series.map((p) => `${X(p.i)},${Y(p.v)}`).join(' ') }),
        series.map((p) => s('circle', { cx: X(p.i), cy: Y(p.v), r: 3, fill: color }, s('title', {}, `${name} ${xs[p.i]}: ${p.text}`))),
      ];
    }));
  const legend = h('div', { class: 'legend' }, names.map((n, i) => h('span', {}, h('i', { style: `background:${COLORS[i % COLORS.length]}` }), n)));
  return h('figure', { class: 'card' }, h('figcaption', {}, h('b', {}, title)), xs.length ? [svg, legend] : h('p', { class: 'muted' }, 'No data.'));
}

// ---------------------------------------------------------------------------------------------
// Session.

function logout() {
  sessionStorage.removeItem(KEY);
  state.key = null;
  state.me = null;
  if (location.hash !== '#/login') location.hash = '#/login';
  else route();
}

function loginPage() {
  const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', placeholder: 'SU-….…', required: true });
  const form = h('form', { class: 'card login', id: 'login-form', onsubmit: async (e) => {
    e.preventDefault();
    state.key = input.value.trim();
    const me = await act(() => call('/me'));
    if (!me) { state.key = null; return; }
    sessionStorage.setItem(KEY, state.key);
    state.me = me;
    location.hash = '#/';
  } },
  h('h1', {}, 'Sign in to Usageflow'),
  h('p', { class: 'muted' }, 'Use the API key your administrator created for your account (usageflow api-key add). The portal can do exactly what the key can do through the API.'),
  h('label', {}, 'API key', input),
  h('p', {}, h('button', { type: 'submit', id: 'login-submit' }, 'Sign in')));
  document.getElementById('nav').replaceChildren();
  document.getElementById('who').replaceChildren();
  show(form);
  input.focus();
}

const NAV = {
  vendor: [['#/products', 'Products'], ['#/files', 'Usage files'], ['#/files/new', 'New file'], ['#/live', 'Live usage']],
  provider: [['#/review', 'Review'], ['#/files', 'Usage files'], ['#/rules', 'Usage rules'], ['#/records', 'Accepted records'],
    ['#/chunks', 'Chunks'], ['#/billing', 'Billing export'], ['#/reconciliations', 'Reconciliation'], ['#/closed', 'Closed files'], ['#/live', 'Live usage']],
  reseller: [['#/usage', 'Usage of your assets']],
};

function frame() {
  const nav = document.getElementById('nav');
  const here = location.hash.split('?')[0];
  nav.replaceChildren(...(NAV[state.me.role] || []).map(([hash, text]) =>
    h('a', { href: hash, class: here === hash ? 'active' : null }, text)));
  document.getElementById('who').replaceChildren(
    h('span', { id: 'account', dataset: { role: state.me.role } }, `${state.me.account.name} · ${state.me.role}`),
    h('button', { id: 'logout', onclick: logout }, 'Sign out'));
}

// ---------------------------------------------------------------------------------------------
// Pages.

function params() {
  const q = location.hash.split('?')[1] || '';
  return Object.fromEntries(new URLSearchParams(q));
}

function go(path, p) {
  const q = new URLSearchParams(Object.entries(p || {}).filter(([, v]) => v !== '' && v !== undefined && v !== null));
  location.hash = q.toString() ? `${path}?${q}` : path;
}

async function productsPage() {
  const products = await call('/products');
  show(h('h1', {}, 'Products'),
    h('p', { class: 'muted' }, 'Products you report usage of, their usage capabilities and items.'),
    products.map((p) => h('section', { class: 'card', dataset: { product: p.id } },
      h('h2', {}, `${p.name} `, h('span', { class: 'muted mono' }, p.id)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Reporting schema'), h('dd', {}, p.capabilities.ppu ? p.capabilities.ppu.schema : '—'),
        h('dt', {}, 'Pay-per-use'), h('dd', {}, p.capabilities.ppu
          ? ['dynamic', 'future', 'late', 'predictive'].filter((k) => p.capabilities.ppu[k]).map((k) => `${k} items/usage`).join(', ') || 'enabled'
          : 'not enabled'),
        h('dt', {}, 'Reservation consumption'), h('dd', {}, p.capabilities.reservation && p.capabilities.reservation.consumption ? 'yes' : 'no'),
        h('dt', {}, 'Aggregation'), h('dd', {}, p.aggregation),
        h('dt', {}, 'Contracts'), h('dd', {}, p.contracts.map((c) => `${c.id} (${c.provider.name}, ${c.marketplace.id})`).join('; ') || '—')),
      h('h2', {}, 'Items'),
      table([
        { title: 'MPN', cell: (i) => i.mpn },
        { title: 'Name', cell: (i) => i.name },
        { title: 'Type', cell: (i) => i.type },
        { title: 'Unit', cell: (i) => i.unit },
        { title: 'Precision', cell: (i) => i.precision },
        { title: 'Period', cell: (i) => i.period },
      ], p.items),
      h('p', { class: 'actions' },
        h('button', { class: 'secondary', onclick: () => act(() => download(`/usage/products/${enc(p.id)}/template/download`, `${p.id}-usage-template.xlsx`)) }, 'Download usage template'),
        state.me.role === 'vendor' ? h('button', { onclick: () => go('#/files/new', { product: p.id }) }, 'New usage file') : null,
        h('button', { class: 'secondary', onclick: () => go('#/live', { product: p.id }) }, 'Live usage')))));
}

/// A paged, filtered list of usage files. `fixed` filters cannot be changed on the page.
async function filesPage({ title, fixed, intro }) {
  const p = params();
  const products = await call('/products');
  const filters = [];
  if (fixed.status) filters.push(`status=${enc(fixed.status)}`);
  else if (p.status) filters.push(`status=${enc(p.status)}`);
  if (p.product) filters.push(`product.id=${enc(p.product)}`);
  if (p.q) filters.push(`search=${enc(p.q)}`);
  filters.push('ordering(-created.at)');
  const offset = Number(p.offset || 0);
  const page = await list('/usage/files', filters, offset);
  const here = location.hash.split('?')[0];
  const statusSelect = h('select', { name: 'status', id: 'filter-status' }, h('option', { value: '' }, 'any status'),
    ['draft', 'invalid', 'ready', 'pending', 'rejected', 'accepted', 'closed', 'deleted'].map((st) =>
      h('option', { value: st, selected: p.status === st }, st)));
  const productSelect = h('select', { name: 'product', id: 'filter-product' }, h('option', { value: '' }, 'any product'),
    products.map((pr) => h('option', { value: pr.id, selected: p.product === pr.id }, `${pr.name} (${pr.id})`)));
  const search = h('input', { name: 'q', id: 'filter-search', value: p.q || '', placeholder: 'id, name, reference…' });
  const form = h('form', { class: 'row', id: 'files-filter', onsubmit: (e) => {
    e.preventDefault();
    go(here, { status: fixed.status ? '' : statusSelect.value, product: productSelect.value, q: search.value.trim() });
  } }, fixed.status ? null : h('label', {}, 'Status', statusSelect), h('label', {}, 'Product', productSelect), h('label', {}, 'Search', search),
  h('button', { type: 'submit' }, 'Filter'));
  show(h('h1', {}, title), intro ? h('p', { class: 'muted' }, intro) : null, form, pagerOf(page, here, p),
    table([
      { title: 'File', cell: (f) => [link(`#/files/${enc(f.id)}`, f.id, { class: 'mono file-link' }), h('div', { class: 'muted' }, f.name)] },
      { title: 'Product', cell: (f) => f.product.name },
      { title: 'Period', cell: (f) => `${day(f.period.from)} – ${day(f.period.to)}` },
      { title: 'Schema', cell: (f) => f.schema },
      { title: 'Status', cell: (f) => badge(f.status) },
      { title: 'Valid', num: true, cell: (f) => (f.records ? f.records.valid : '') },
      { title: 'Invalid', num: true, cell: (f) => (f.records ? f.records.invalid : '') },
      { title: state.me.role === 'vendor' ? 'Provider' : 'Vendor', cell: (f) => (state.me.role === 'vendor' ? f.provider.name : f.vendor.name) },
      { title: 'Created', cell: (f) => when(f.events && f.events.created && f.events.created.at) },
    ], page.items, { id: 'files-table' }), pagerOf(page, here, p));
}

async function newFilePage() {
  const p = params();
  const products = (await call('/products')).filter((pr) => pr.capabilities.usage_enabled);
  const product = h('select', { id: 'new-product', required: true }, products.map((pr) => h('option', { value: pr.id, selected: p.product === pr.id }, `${pr.name} (${pr.id})`)));
  const contract = h('select', { id: 'new-contract', required: true });
  const fill = () => {
    const pr = products.find((x) => x.id === product.value);
    contract.replaceChildren(...(pr ? pr.contracts : []).map((c) => h('option', { value: c.id }, `${c.id} · ${c.provider.name} · ${c.marketplace.id}`)));
  };
  product.addEventListener('change', fill);
  fill();
  const now = new Date();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  const lastDay = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 0));
  const from = h('input', { id: 'new-from', type: 'date', required: true, value: first.toISOString().slice(0, 10) });
  const to = h('input', { id: 'new-to', type: 'date', required: true, value: lastDay.toISOString().slice(0, 10) });
  const name = h('input', { id: 'new-name', placeholder: 'e.g. November 2026' });
  const description = h('input', { id: 'new-description' });
  const external = h('input', { id: 'new-external-id', placeholder: 'your reference' });
  const form = h('form', { class: 'card', id: 'new-file-form', onsubmit: async (e) => {
    e.preventDefault();
    const file = await act(() => call('/usage/files', { method: 'POST', json: {
      product: { id: product.value }, contract: { id: contract.value }, period: { from: from.value, to: to.value },
      name: name.value || undefined, description: description.value, external_id: external.value,
    } }));
    if (file) { notice(`Created ${file.id}`); location.hash = `#/files/${enc(file.id)}`; }
  } },
  h('div', { class: 'row' }, h('label', {}, 'Product', product), h('label', {}, 'Contract', contract)),
  h('div', { class: 'row' }, h('label', {}, 'Period from', from), h('label', {}, 'Period to', to)),
  h('div', { class: 'row' }, h('label', {}, 'Name', name), h('label', {}, 'Description', description), h('label', {}, 'External id', external)),
  h('button', { type: 'submit', id: 'create-file' }, 'Create usage file'));
  show(h('h1', {}, 'New usage file'), products.length ? form : h('p', { class: 'muted' }, 'None of your products has usage reporting enabled.'));
}

async function fileActions(f, reload) {
  const role = state.me.role;
  const out = [];
  const step = (label, path, opts, id, cls) => h('button', { id, class: cls || null, onclick: async () => {
    const r = await act(() => call(`/usage/files/${enc(f.id)}/${path}`, { method: 'POST', ...(opts ? opts() : {}) }));
    if (r) { notice(`${f.id}: ${r.status}`); reload(); }
  } }, label);
  if (role === 'vendor') {
    if (['draft', 'ready', 'invalid'].includes(f.status)) {
      const input = h('input', { type: 'file', id: 'upload-input', accept: '.xlsx,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' });
      out.push(h('form', { class: 'row', id: 'upload-form', onsubmit: async (e) => {
        e.preventDefault();
        if (!input.files.length) { banner('Choose the usage spreadsheet (.xlsx) to upload.'); return; }
        const form = new FormData();
        form.append('usage_file', input.files[0]);
        const r = await act(() => call(`/usage/files/${enc(f.id)}/upload`, { method: 'POST', form }));
        if (r) { notice(`Uploaded: ${r.status}, ${r.records.valid} valid and ${r.records.invalid} invalid records`); reload(); }
      } }, h('label', {}, 'Usage spreadsheet', input), h('button', { type: 'submit', id: 'upload-submit' }, 'Upload')));
    }
    const buttons = [];
    if (f.status === 'ready') buttons.push(step('Submit to provider', 'submit', null, 'submit-file'));
    if (['draft', 'ready', 'invalid', 'rejected'].includes(f.status)) {
      buttons.push(h('button', { id: 'delete-file', class: 'danger', onclick: async () => {
        if (!window.confirm(`Delete ${f.id}?`)) return;
        const r = await act(() => call(`/usage/files/${enc(f.id)}/delete`, { method: 'POST' }));
        if (r) { notice(`${f.id} deleted`); reload(); }
      } }, 'Delete'));
    }
    if (buttons.length) out.push(h('div', { class: 'actions' }, buttons));
  }
  if (role === 'provider') {
    if (f.status === 'pending') {
      const note = h('textarea', { id: 'review-note', maxlength: 200, placeholder: 'Note to the vendor (required to reject)' });
      out.push(h('div', { class: 'actions', id: 'review' }, h('label', {}, 'Note', note),
        step('Accept', 'accept', () => ({ json: { acceptance_note: note.value } }), 'accept-file'),
        step('Reject', 'reject', () => ({ json: { rejection_note: note.value } }), 'reject-file', 'danger')));
    }
    if (f.status === 'accepted') {
      out.push(h('div', { class: 'actions' },
        h('button', { class: 'secondary', id: 'reconcile-file', onclick: () => go('#/reconciliations', { file: f.id }) }, 'Reconcile…'),
        step('Close file', 'close', null, 'close-file', 'secondary')));
    }
  }
  return out;
}

async function filePage(id) {
  const f = await call(`/usage/files/${enc(id)}`);
  const reload = () => route();
  const [history, errors, summary] = await Promise.all([
    call(`/usage/files/${enc(id)}/history`),
    f.status === 'invalid' || (f.records && f.records.invalid > 0) ? list(`/usage/files/${enc(id)}/errors`, [], 0).catch((e) => ({ failed: e.message })) : null,
    f.records && f.records.valid > 0 ? call(`/usage/files/${enc(id)}/summary`).catch((e) => ({ failed: e.message })) : null,
  ]);
  const unavailable = [errors, summary].filter((x) => x && x.failed).map((x) => h('p', { class: 'muted', id: 'partial-error' }, `Not shown: ${x.failed}`));
  if (errors && errors.failed) errors.items = [];
  const t = summary && !summary.failed ? summary.totals : null;
  const downloads = h('div', { class: 'actions' },
    f.usage_file_uri ? h('button', { class: 'secondary', id: 'download-uploaded', onclick: () => act(() => download(`/usage/files/${enc(id)}/usagefile`, `${id}.xlsx`)) }, 'Uploaded file') : null,
    f.processed_file_uri ? h('button', { class: 'secondary', id: 'download-processed', onclick: () => act(() => download(`/usage/files/${enc(id)}/processedfile`, `${id}-PROCESSED.xlsx`)) }, 'Processed file') : null);
  show(
    h('h1', {}, `${f.name} `, h('span', { class: 'mono muted' }, f.id), ' ', h('span', { id: 'file-status' }, badge(f.status))),
    h('div', { class: 'grid' },
      h('section', { class: 'card' }, h('dl', { class: 'facts' },
        h('dt', {}, 'Product'), h('dd', {}, `${f.product.name} (${f.product.id})`),
        h('dt', {}, 'Vendor'), h('dd', {}, `${f.vendor.name} (${f.vendor.id})`),
        h('dt', {}, 'Provider'), h('dd', {}, `${f.provider.name} (${f.provider.id})`),
        h('dt', {}, 'Contract'), h('dd', {}, f.contract.id),
        h('dt', {}, 'Marketplace'), h('dd', {}, `${f.marketplace.name || ''} (${f.marketplace.id})`),
        h('dt', {}, 'Period'), h('dd', {}, `${day(f.period.from)} – ${day(f.period.to)}`),
        h('dt', {}, 'Schema'), h('dd', {}, f.schema),
        h('dt', {}, 'Currency'), h('dd', {}, f.currency || '—'),
        h('dt', {}, 'External id'), h('dd', {}, f.external_id || '—'),
        f.acceptance_note ? [h('dt', {}, 'Acceptance note'), h('dd', {}, f.acceptance_note)] : null,
        f.rejection_note ? [h('dt', {}, 'Rejection note'), h('dd', { id: 'rejection-note' }, f.rejection_note)] : null,
        f.error_detail ? [h('dt', {}, 'Problem'), h('dd', { id: 'error-detail' }, f.error_detail)] : null)),
      h('section', { class: 'card' },
        h('div', { class: 'kpis' },
          h('div', { class: 'kpi' }, 'Valid records', h('b', { id: 'valid-count' }, f.records ? f.records.valid : 0)),
          h('div', { class: 'kpi' }, 'Invalid records', h('b', { id: 'invalid-count' }, f.records ? f.records.invalid : 0)),
          t ? h('div', { class: 'kpi' }, 'Total usage', h('b', { id: 'total-usage' }, t.usage || '0')) : null,
          t && t.amount ? h('div', { class: 'kpi' }, 'Total amount', h('b', {}, `${t.amount} ${f.currency || ''}`)) : null,
          t ? h('div', { class: 'kpi' }, 'Assets', h('b', {}, t.assets)) : null),
        await fileActions(f, reload), downloads)),
    errors && errors.items.length ? [h('h2', {}, `Why the file is invalid (${errors.total})`),
      table([
        { title: 'Row', num: true, cell: (r) => (r.row === 0 ? 'file' : r.row) },
        { title: 'Record', cell: (r) => r.record_id || '' },
        { title: 'Asset', cell: (r) => r.asset_search_value || '' },
        { title: 'Item', cell: (r) => r.item_search_value || '' },
        { title: 'Quantity', num: true, cell: (r) => r.quantity || '' },
        { title: 'Why', cell: (r) => r.error || '' },
      ], errors.items, { id: 'invalid-rows' }),
      errors.total > errors.items.length ? h('p', { class: 'muted' }, `The first ${errors.items.length} of ${errors.total}; the processed file lists them all.`) : null] : null,
    unavailable,
    t ? [h('h2', {}, 'Usage summary'),
      h('div', { class: 'grid', id: 'file-summary' },
        barChart(summary.per_item, { title: 'Usage per item', label: (r) => `${r.item_name || r.item_id} (${r.item_unit || ''})`, value: (r) => r.usage, testid: 'per-item-chart' }),
        barChart(summary.top_assets, { title: 'Top assets by usage', label: (r) => `${r.asset_id} ${r.customer_name || ''}`, value: (r) => r.usage, testid: 'top-assets-chart' })),
      lineChart(summary.per_day.map((r) => ({ x: r.day, series: r.item_name || r.item_id, y: r.usage })), { title: 'Usage per day', testid: 'per-day-chart' }),
      table([
        { title: 'Item', cell: (r) => r.item_name || r.item_id },
        { title: 'MPN', cell: (r) => r.item_mpn },
        { title: 'Records', num: true, cell: (r) => r.records },
        { title: 'Assets', num: true, cell: (r) => r.assets },
        { title: 'Usage', num: true, cell: (r) => r.usage },
        { title: 'Unit', cell: (r) => r.item_unit },
        { title: 'Amount', num: true, cell: (r) => r.amount || '' },
      ], summary.per_item, { id: 'per-item-table' })] : null,
    h('h2', {}, 'History'),
    table([
      { title: '#', num: true, cell: (e) => e.seq },
      { title: 'When', cell: (e) => when(e.at) },
      { title: 'Step', cell: (e) => e.type.replaceAll('_', ' ') },
      { title: 'By', cell: (e) => (e.actor.by ? e.actor.by.name || e.actor.by.id : e.actor.role) },
      { title: 'Detail', cell: (e) => Object.entries(e.detail || {}).filter(([, v]) => v !== null && v !== '' && typeof v !== 'object').map(([k, v]) => `${k}: ${v}`).join(', ') },
      { title: 'Status', cell: (e) => badge(e.status) },
    ], history, { id: 'history' }));
}

async function livePage() {
  const p = params();
  const products = await call('/products');
  const q = new URLSearchParams(Object.entries({ product: p.product, item: p.item, asset: p.asset, from: p.from, to: p.to }).filter(([, v]) => v));
  const live = await call(`/usage/live?${q}`);
  const product = h('select', { id: 'live-product' }, h('option', { value: '' }, 'all products'), products.map((pr) => h('option', { value: pr.id, selected: p.product === pr.id }, pr.name)));
  const item = h('input', { id: 'live-item', value: p.item || '', placeholder: 'item id or MPN' });
  const asset = h('input', { id: 'live-asset', value: p.asset || '', placeholder: 'AS-…' });
  const from = h('input', { id: 'live-from', type: 'date', value: p.from || live.from });
  const to = h('input', { id: 'live-to', type: 'date', value: p.to || live.to });
  const auto = h('input', { type: 'checkbox', id: 'live-auto', checked: p.auto !== 'off' });
  const form = h('form', { class: 'row', onsubmit: (e) => {
    e.preventDefault();
    go('#/live', { product: product.value, item: item.value.trim(), asset: asset.value.trim(), from: from.value, to: to.value, auto: auto.checked ? '' : 'off' });
  } }, h('label', {}, 'Product', product), h('label', {}, 'Item', item), h('label', {}, 'Asset', asset), h('label', {}, 'From', from), h('label', {}, 'To', to),
  h('label', {}, 'Refresh every 10 s', auto), h('button', { type: 'submit' }, 'Show'));
  const t = live.totals || {};
  show(h('h1', {}, 'Live usage'),
    h('p', { class: 'muted' }, `Committed metering events from ${live.from} to ${live.to}, by ${live.bucket}. Last event ingested: ${when(t.last_ingested_at) || 'none yet'}.`),
    form,
    h('div', { class: 'kpis', id: 'live-totals' },
      h('div', { class: 'kpi' }, 'Events', h('b', { id: 'live-events' }, t.events || '0')),
      h('div', { class: 'kpi' }, 'Quantity', h('b', { id: 'live-quantity' }, t.quantity || '0')),
      h('div', { class: 'kpi' }, 'Assets', h('b', {}, t.assets || '0')),
      h('div', { class: 'kpi' }, 'Latest usage', h('b', {}, when(t.last_usage_at) || '—'))),
    lineChart(live.series.map((r) => ({ x: r.bucket, series: r.item_mpn, y: r.quantity })), { title: `Usage per ${live.bucket}`, testid: 'live-series-chart' }),
    h('div', { class: 'grid' },
      barChart(live.per_item, { title: 'Per item', label: (r) => `${r.item_mpn} (${r.product_id})`, value: (r) => r.quantity, testid: 'live-item-chart' }),
      barChart(live.top_assets, { title: 'Top assets', label: (r) => r.asset_id, value: (r) => r.quantity, testid: 'live-assets-chart' })));
  if (auto.checked) {
    state.timer = setTimeout(() => { if (location.hash.startsWith('#/live')) route(); }, 10000);
  }
}

async function rulesPage() {
  const p = params();
  const products = await call('/products');
  if (!products.length) { show(h('h1', {}, 'Usage rules'), h('p', { class: 'muted' }, 'You distribute no product with usage.')); return; }
  const productId = p.product || products[0].id;
  const product = products.find((x) => x.id === productId) || products[0];
  const rules = (await list(`/products/${enc(product.id)}/usage/rules`, [], 0)).items;
  const select = h('select', { id: 'rules-product', onchange: () => go('#/rules', { product: select.value }) },
    products.map((pr) => h('option', { value: pr.id, selected: pr.id === product.id }, `${pr.name} (${pr.id})`)));
  const action = h('select', { id: 'rule-action' }, ['accept', 'reject', 'manual'].map((a) => h('option', { value: a }, a)));
  const scope = h('select', { id: 'rule-scope' }, ['record', 'file'].map((a) => h('option', { value: a }, a)));
  const item = h('select', { id: 'rule-item' }, h('option', { value: '' }, 'every item'), product.items.map((i) => h('option', { value: i.id }, `${i.name} (${i.mpn})`)));
  const rule = h('input', { id: 'rule-text', placeholder: 'e.g. quantity <= 1000 (empty: always)' });
  const gravity = h('input', { id: 'rule-gravity', type: 'number', value: '0', style: 'width:6rem' });
  const form = h('form', { class: 'row card', id: 'rule-form', onsubmit: async (e) => {
    e.preventDefault();
    const body = { action: action.value, scope: scope.value, rule: rule.value, gravity: Number(gravity.value || 0) };
    if (item.value) body.item = { id: item.value };
    const r = await act(() => call(`/products/${enc(product.id)}/usage/rules`, { method: 'POST', json: body }));
    if (r) { notice(`Rule ${r.id} created`); route(); }
  } }, h('label', {}, 'Action', action), h('label', {}, 'Scope', scope), h('label', {}, 'Item', item), h('label', {}, 'Condition', rule), h('label', {}, 'Order', gravity),
  h('button', { type: 'submit', id: 'rule-create' }, 'Add rule'));
  show(h('h1', {}, 'Usage rules'),
    h('p', { class: 'muted' }, 'Applied when a vendor submits a file: a matching reject rule rejects it, a matching manual rule keeps it for review, files whose items all pass accept rules are accepted. Conditions compare quantity, amount (each record) or total_quantity, total_amount, records (file totals) with exact decimals.'),
    h('div', { class: 'row' }, h('label', {}, 'Product', select)), form,
    table([
      { title: 'Rule', cell: (r) => h('span', { class: 'mono' }, r.id) },
      { title: 'Action', cell: (r) => r.action },
      { title: 'Scope', cell: (r) => r.scope },
      { title: 'Item', cell: (r) => (r.item ? r.item.name || r.item.id : 'every item') },
      { title: 'Condition', cell: (r) => r.rule || '(always)' },
      { title: 'Order', num: true, cell: (r) => r.gravity },
      { title: 'Status', cell: (r) => badge(r.status) },
      { title: '', cell: (r) => (r.status === 'active' ? h('button', { class: 'secondary', onclick: async () => {
        const ok = await act(() => call(`/products/${enc(product.id)}/usage/rules/${enc(r.id)}`, { method: 'DELETE' }).then(() => true));
        if (ok) { notice(`Rule ${r.id} deleted`); route(); }
      } }, 'Delete') : '') },
    ], rules, { id: 'rules-table' }));
}

function hubFilter(p, here) {
  const hub = h('select', { id: 'filter-hub' }, h('option', { value: '' }, 'all hubs'),
    (state.me.hubs || []).map((x) => h('option', { value: x.id, selected: p.hub === x.id }, `${x.name} (${x.id})`)));
  return h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); go(here, { hub: hub.value }); } },
    h('label', {}, 'Hub', hub), h('button', { type: 'submit', id: 'filter-hub-submit' }, 'Filter'));
}

function pagerOf(page, here, p) {
  const last = page.offset + page.items.length;
  return h('div', { class: 'pager' },
    h('button', { class: 'secondary', disabled: page.offset === 0, onclick: () => go(here, { ...p, offset: Math.max(0, page.offset - PAGE) }) }, '‹ Previous'),
    h('span', { class: 'page-info' }, page.total ? `${page.offset + 1}–${last} of ${page.total}` : 'none'),
    h('button', { class: 'secondary', disabled: last >= page.total, onclick: () => go(here, { ...p, offset: page.offset + PAGE }) }, 'Next ›'));
}

async function recordsPage() {
  const p = params();
  const filters = ['in(status,(approved,closed))'];
  if (p.hub) filters.push(`hub.id=${enc(p.hub)}`);
  const page = await list('/usage/records', filters, Number(p.offset || 0));
  show(h('h1', {}, 'Accepted records'),
    h('p', { class: 'muted' }, 'Records of accepted files, approved or closed, by hub.'),
    hubFilter(p, '#/records'), pagerOf(page, '#/records', p),
    table([
      { title: 'Record', cell: (r) => h('span', { class: 'mono' }, r.id) },
      { title: 'Asset', cell: (r) => r.asset_id || (r.asset && r.asset.id) },
      { title: 'Item', cell: (r) => (r.item && (r.item.name || r.item.id)) || '' },
      { title: 'Start', cell: (r) => when(r.start_date) },
      { title: 'Usage', num: true, cell: (r) => String(r.usage) },
      { title: 'Amount', num: true, cell: (r) => (r.amount === null || r.amount === undefined ? '' : String(r.amount)) },
      { title: 'Hub', cell: (r) => (r.hub && r.hub.id) || r.hub_id || '' },
      { title: 'Status', cell: (r) => badge(r.status) },
      { title: 'Billing id', cell: (r) => r.external_billing_id || '' },
    ], page.items, { id: 'records-table' }));
}

async function chunksPage() {
  const p = params();
  const filters = [];
  if (p.hub) filters.push(`binding.hub.id=${enc(p.hub)}`);
  const page = await list('/usage/chunks', filters, Number(p.offset || 0));
  show(h('h1', {}, 'Chunks'),
    h('p', { class: 'muted' }, 'The parts of accepted files, one per hub, to hand to billing.'),
    hubFilter(p, '#/chunks'), pagerOf(page, '#/chunks', p),
    table([
      { title: 'Chunk', cell: (c) => h('span', { class: 'mono' }, c.id) },
      { title: 'File', cell: (c) => link(`#/files/${enc(c.usagefile.id)}`, c.usagefile.id, { class: 'mono' }) },
      { title: 'Hub', cell: (c) => `${c.binding.hub.name || ''} (${c.binding.hub.id})` },
      { title: 'Marketplace', cell: (c) => c.marketplace.id },
      { title: 'Records', num: true, cell: (c) => (c.stats ? c.stats.uploaded || c.stats.accepted || '' : '') },
      { title: 'Status', cell: (c) => badge(c.status) },
      { title: '', cell: (c) => h('button', { class: 'secondary', onclick: () => act(() => download(`/usage/chunks/${enc(c.id)}/download`, `${c.id}.xlsx`)) }, 'Download') },
    ], page.items, { id: 'chunks-table' }));
}

async function billingPage() {
  const p = params();
  const products = await call('/products');
  const from = h('input', { id: 'billing-from', type: 'date', value: p.from || '' });
  const to = h('input', { id: 'billing-to', type: 'date', value: p.to || '' });
  const hub = h('input', { id: 'billing-hub', placeholder: 'HB-… (all)' });
  const product = h('select', { id: 'billing-product' }, h('option', { value: '' }, 'all products'), products.map((pr) => h('option', { value: pr.id }, pr.name)));
  const format = h('select', { id: 'billing-format' }, ['csv', 'xlsx', 'parquet'].map((f) => h('option', { value: f }, f.toUpperCase())));
  const result = h('p', { id: 'billing-result', class: 'muted' });
  const form = h('form', { class: 'card', id: 'billing-form', onsubmit: async (e) => {
    e.preventDefault();
    const q = new URLSearchParams(Object.entries({ format: format.value, from: from.value, to: to.value, hub: hub.value.trim(), product: product.value }).filter(([, v]) => v));
    const r = await act(() => download(`/billing/export?${q}`, `billing.${format.value}`));
    if (r) result.textContent = `${r.name}: ${r.records} records, ${r.size} bytes.`;
  } },
  h('div', { class: 'row' }, h('label', {}, 'Period from', from), h('label', {}, 'Period to', to), h('label', {}, 'Hub', hub), h('label', {}, 'Product', product), h('label', {}, 'Format', format)),
  h('button', { type: 'submit', id: 'billing-download' }, 'Download billing export'), result);
  show(h('h1', {}, 'Billing export'),
    h('p', { class: 'muted' }, 'Approved and closed records of accepted files with customer, tiers, item, period, quantity and amounts, ordered for billing. The same export as the usageflow export-billing command.'),
    form);
}

async function reconciliationsPage() {
  const p = params();
  const accepted = await list('/usage/files', ['in(status,(accepted,closed))', 'ordering(-created.at)'], 0);
  const page = await list('/usage/reconciliations', [], Number(p.offset || 0));
  const file = h('select', { id: 'recon-file' },
    h('option', { value: '' }, 'the file named in the workbook (report_id)'),
    p.file && !accepted.items.some((f) => f.id === p.file) ? h('option', { value: p.file, selected: true }, p.file) : null,
    accepted.items.map((f) => h('option', { value: f.id, selected: p.file === f.id }, `${f.id} · ${f.name} · ${f.status}`)));
  const input = h('input', { type: 'file', id: 'recon-input', accept: '.xlsx' });
  const note = h('input', { id: 'recon-note', placeholder: 'note' });
  const form = h('form', { class: 'card row', id: 'recon-form', onsubmit: async (e) => {
    e.preventDefault();
    if (!input.files.length) { banner('Choose the reconciliation spreadsheet (.xlsx): record_id and external_billing_id per billed record.'); return; }
    const form = new FormData();
    form.append('recon_file', input.files[0]);
    if (file.value) form.append('usagefile', file.value);
    form.append('note', note.value);
    const r = await act(() => call('/usage/reconciliations', { method: 'POST', form }));
    if (r) { notice(`Reconciliation ${r.id}: ${r.status}`); route(); }
  } }, h('label', {}, 'Usage file', file), h('label', {}, 'Billing result (.xlsx)', input), h('label', {}, 'Note', note),
  h('button', { type: 'submit', id: 'recon-submit' }, 'Upload reconciliation'));
  show(h('h1', {}, 'Reconciliation'),
    h('p', { class: 'muted' }, 'Upload what billing did with an accepted file (record_id and external_billing_id per record): the records are closed with their billing references and the report says what matched.'),
    form, pagerOf(page, '#/reconciliations', p),
    table([
      { title: 'Reconciliation', cell: (r) => h('span', { class: 'mono' }, r.id) },
      { title: 'File', cell: (r) => link(`#/files/${enc(r.usagefile.id)}`, r.usagefile.id, { class: 'mono' }) },
      { title: 'Uploaded', cell: (r) => when(r.events && r.events.uploaded && r.events.uploaded.at) },
      { title: 'Status', cell: (r) => badge(r.status) },
      { title: 'Report', cell: (r) => h('span', { class: 'recon-report' }, [r.notes && r.notes.processing, r.error && r.error.detail].filter(Boolean).join(' · ')) },
      { title: '', cell: (r) => h('button', { class: 'secondary', onclick: () => act(() => download(`/usage/reconciliations/${enc(r.id)}/processedfile`, `${r.id}-processed.xlsx`)) }, 'Report file') },
    ], page.items, { id: 'recon-table' }));
}

async function resellerUsagePage() {
  const p = params();
  const filters = [];
  if (p.asset) filters.push(`asset.id=${enc(p.asset)}`);
  const page = await list('/usage/aggregates', filters, Number(p.offset || 0));
  const asset = h('input', { id: 'filter-asset', value: p.asset || '', placeholder: 'AS-…' });
  show(h('h1', {}, 'Usage of your assets'),
    h('p', { class: 'muted' }, 'Reported and accepted usage of the assets you resell, per asset and item.'),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); go('#/usage', { asset: asset.value.trim() }); } },
      h('label', {}, 'Asset', asset), h('button', { type: 'submit' }, 'Filter')),
    pagerOf(page, '#/usage', p),
    table([
      { title: 'Asset', cell: (a) => a.asset.id },
      { title: 'Item', cell: (a) => `${a.item.name || a.item.id} (${a.item.mpn || ''})` },
      { title: 'Reported', num: true, cell: (a) => String(a.consumed) },
      { title: 'Accepted', num: true, cell: (a) => String(a.accepted) },
      { title: 'Unit', cell: (a) => a.item.unit || '' },
      { title: 'Last reported', cell: (a) => when(a.events && a.events.last_reported && a.events.last_reported.at) },
    ], page.items, { id: 'aggregates-table' }));
}

// ---------------------------------------------------------------------------------------------
// Router.

const ROUTES = [
  [/^#\/products$/, () => productsPage()],
  [/^#\/files$/, () => filesPage({ title: 'Usage files', fixed: {} })],
  [/^#\/files\/new$/, () => newFilePage()],
  [/^#\/files\/([^/?]+)$/, (m) => filePage(decodeURIComponent(m[1]))],
  [/^#\/review$/, () => filesPage({ title: 'Files to review', fixed: { status: 'pending' }, intro: 'Submitted files waiting for your decision. Open one for its summary and plots, then accept or reject it with a note.' })],
  [/^#\/closed$/, () => filesPage({ title: 'Closed files', fixed: { status: 'closed' }, intro: 'Accepted files whose records are all billed and closed.' })],
  [/^#\/live$/, () => livePage()],
  [/^#\/rules$/, () => rulesPage()],
  [/^#\/records$/, () => recordsPage()],
  [/^#\/chunks$/, () => chunksPage()],
  [/^#\/billing$/, () => billingPage()],
  [/^#\/reconciliations$/, () => reconciliationsPage()],
  [/^#\/usage$/, () => resellerUsagePage()],
];

async function route() {
  clearTimeout(state.timer);
  const hash = location.hash || '#/';
  if (!state.key || hash === '#/login') {
    if (state.key && hash === '#/login') { location.hash = '#/'; return; }
    loginPage();
    return;
  }
  if (!state.me) {
    state.me = await act(() => call('/me'));
    if (!state.me) { logout(); return; }
  }
  frame();
  const path = hash.split('?')[0];
  if (path === '#/' || path === '#') {
    location.replace({ provider: '#/review', vendor: '#/files', reseller: '#/usage' }[state.me.role] || '#/files');
    return;
  }
  const found = ROUTES.map(([re, page]) => [path.match(re), page]).find(([m]) => m);
  if (!found) { show(h('h1', {}, 'Not found'), h('p', {}, 'No such page.')); return; }
  document.getElementById('main').setAttribute('aria-busy', 'true');
  try {
    await found[1](found[0]);
  } catch (e) {
    show(h('h1', {}, 'Something went wrong'), h('p', { id: 'page-error' }, e.message));
  } finally {
    document.getElementById('main').removeAttribute('aria-busy');
    document.getElementById('main').dataset.page = path;
  }
}

window.addEventListener('hashchange', () => { banner(''); route(); });
route();
