// Agora web UI: a single-page app with hash routes, no framework, no build.
//
// Every view polls the master's JSON under /api/ (lists are paged on the
// server) with back-off on errors; what could not be refreshed is marked
// stale. Sandboxes are read through the master's /agents/{id}/files/* proxy,
// so the browser never talks to an agent.
//
// With authentication on, the master answers 401 and the page shows its own
// login form. The credential (an `Authorization: Basic ...` value) lives in
// one variable of this script only -- never in localStorage, sessionStorage
// or a cookie -- so reloading or closing the page forgets it. Every request
// says `X-Requested-With: XMLHttpRequest`, for which the master leaves out
// its `WWW-Authenticate` challenge: the browser never pops its own dialog.
'use strict';

const PAGE = 50;            // rows per list page
const LOG_CHUNK = 65536;    // bytes per log read
const LOG_KEEP = 1 << 20;   // bytes of a log kept on screen
const TAIL_EVERY = 500;     // ms between reads of a followed log
const MAX_DELAY = 30000;    // longest poll back-off, ms

// Mesos' terminal states: nothing follows them, so there is nothing to kill.
const TERMINAL = new Set(['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_ERROR', 'TASK_LOST',
  'TASK_DROPPED', 'TASK_GONE', 'TASK_GONE_BY_OPERATOR']);

const TASK_STATES = ['TASK_STAGING', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_KILLING',
  'TASK_UNREACHABLE', 'TASK_FINISHED', 'TASK_KILLED', 'TASK_FAILED', 'TASK_LOST',
  'TASK_ERROR', 'TASK_DROPPED', 'TASK_GONE', 'TASK_GONE_BY_OPERATOR', 'TASK_UNKNOWN'];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function esc(value) {
  return String(value == null ? '' : value).replace(/[&<>"']/g, c => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}
const enc = encodeURIComponent;
const $ = sel => document.querySelector(sel);

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// ---------------------------------------------------------------------------
// Who is asking: the credential, in memory only
// ---------------------------------------------------------------------------

const auth = {
  header: null,      // 'Basic ...' once logged in; null: anonymous
  principal: null,   // who that is, for the top bar
  asked: false,      // whether the master ever answered 401 (it knows credentials)
  anonymousOk: false, // whether the master showed data to nobody in particular
  waiting: false,    // the login form is up and the views wait for it
};

// `fetch` with the page's headers: the credential when there is one, and the
// header that keeps the master from challenging (no browser dialog).
function apiFetch(url, options) {
  const opts = Object.assign({ cache: 'no-store' }, options || {});
  const headers = Object.assign({ 'X-Requested-With': 'XMLHttpRequest' }, opts.headers || {});
  if (auth.header) headers.Authorization = auth.header;
  opts.headers = headers;
  return fetch(url, opts);
}

function basicHeader(principal, secret) {
  const bytes = new TextEncoder().encode(`${principal}:${secret}`);
  let binary = '';
  bytes.forEach(b => { binary += String.fromCharCode(b); });
  return 'Basic ' + btoa(binary);
}

// Shows the login form in place of the views, which stop polling until
// someone logs in. `why` is said above the form.
function needLogin(why) {
  auth.asked = true;
  const form = $('#login');
  const error = $('#login-error');
  error.hidden = !why;
  error.textContent = why || '';
  if (auth.waiting) return;
  auth.waiting = true;
  live.generation += 1;
  clearTimeout(live.timer);
  if (current.view && current.view.unmount) current.view.unmount();
  current.view = null;
  $('#view').hidden = true;
  $('#nav').hidden = true;
  banner(null);
  form.hidden = false;
  // Cancel only where the master shows data to anonymous viewers.
  $('#login-cancel').hidden = !!auth.header || !auth.anonymousOk;
  showWho();
  $('#login-secret').value = '';
  ($('#login-principal').value ? $('#login-secret') : $('#login-principal')).focus();
}

function closeLogin() {
  auth.waiting = false;
  $('#login').hidden = true;
  $('#login-error').hidden = true;
  $('#view').hidden = false;
  $('#nav').hidden = false;
  $('#view').innerHTML = '<p class="muted">Loading…</p>';
  showWho();
  route();
}

function showWho() {
  const who = $('#who');
  who.hidden = !auth.header && !auth.asked;
  $('#who-name').textContent = auth.principal ? `Logged in as ${auth.principal}` : 'Not logged in';
  $('#logout').hidden = !auth.header;
  $('#login-open').hidden = !!auth.header || auth.waiting;
}

async function login(ev) {
  ev.preventDefault();
  const principal = $('#login-principal').value.trim();
  const secret = $('#login-secret').value;
  if (!principal || !secret) {
    needLogin('Enter a principal and its secret.');
    return;
  }
  const header = basicHeader(principal, secret);
  $('#login-submit').disabled = true;
  try {
    // Any master answers /api/master; a wrong credential is refused with 401
    // even where reads need none.
    const response = await fetch('/api/master', {
      cache: 'no-store',
      headers: { 'X-Requested-With': 'XMLHttpRequest', Authorization: header },
    });
    if (response.status === 401) {
      $('#login-secret').value = '';
      needLogin('Wrong principal or secret.');
      $('#login-secret').focus();
      return;
    }
    if (!response.ok) {
      needLogin(`The master answered ${response.status} ${response.statusText}; try again.`);
      return;
    }
    auth.header = header;
    auth.principal = principal;
    $('#login-secret').value = '';
    closeLogin();
  } catch (e) {
    needLogin(`Cannot reach the master: ${e.message || e}`);
  } finally {
    $('#login-submit').disabled = false;
  }
}

function logout() {
  auth.header = null;
  auth.principal = null;
  needLogin(null);
}

// Downloads from the sandbox: a plain link cannot carry the credential, so
// once logged in the file is fetched with it and handed to the browser.
async function downloadWithAuth(link) {
  try {
    const response = await apiFetch(link.href);
    if (response.status === 401) { needLogin('Your credential was refused; log in again.'); return; }
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const url = URL.createObjectURL(await response.blob());
    const name = (new URL(link.href, location.href).searchParams.get('path') || 'download').split('/').pop();
    const a = document.createElement('a');
    a.href = url;
    a.download = name || 'download';
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    reportError(`download failed: ${e.message || e}`);
  }
}

document.addEventListener('click', ev => {
  const link = ev.target.closest && ev.target.closest('a[download], #log-download');
  if (!link || !auth.header || link.getAttribute('href') === '#') return;
  ev.preventDefault();
  downloadWithAuth(link);
});

async function getJSON(url) {
  const response = await apiFetch(url);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    if (response.status === 401) {
      needLogin(auth.header ? 'Your credential was refused; log in again.' : null);
    }
    const why = body && body.error ? body.error : response.statusText;
    throw new HttpError(response.status, `${response.status} ${why}`);
  }
  if (!auth.header) auth.anonymousOk = true;
  return body;
}

function query(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(v)}`);
  return parts.length ? '?' + parts.join('&') : '';
}

function num(n, digits) {
  if (n == null || isNaN(n)) return '–';
  const d = digits == null ? (Number.isInteger(n) ? 0 : 1) : digits;
  return Number(n).toLocaleString('en-US', { minimumFractionDigits: 0, maximumFractionDigits: d });
}
function cores(n) { return num(n, 2); }
// Mesos' mem and disk are in MB (MiB).
function mib(n) {
  if (n == null || isNaN(n)) return '–';
  if (n >= 1024 * 1024) return num(n / 1024 / 1024, 1) + ' TiB';
  if (n >= 1024) return num(n / 1024, 1) + ' GiB';
  return num(n, 0) + ' MiB';
}
function bytes(n) {
  if (n == null || isNaN(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return num(n, i === 0 ? 0 : 1) + ' ' + units[i];
}
function fmtRes(name, n) { return name === 'mem' || name === 'disk' ? mib(n) : cores(n); }
function ago(seconds) {
  if (seconds == null || isNaN(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
function when(epochSeconds) {
  if (!epochSeconds) return '–';
  const date = new Date(epochSeconds * 1000);
  const rel = ago(Date.now() / 1000 - epochSeconds) + ' ago';
  return `<span title="${esc(date.toISOString())}">${esc(rel)}</span>`;
}
function short(id) {
  const s = String(id || '');
  return s.length > 18 ? `<span title="${esc(s)}">…${esc(s.slice(-12))}</span>` : esc(s);
}

// What a badge says for a state: TASK_KILLED -> "killed".
function stateLabel(state) {
  return String(state || '').replace(/^TASK_/, '').replace(/_/g, ' ').toLowerCase();
}

// An agent as people tell agents apart: `hostname:port (id)`, the id
// shortened (all of it in the title). `address` is empty for an agent the
// master no longer knows: then only the id.
function agentLabel(address, id) {
  const full = String(id || '');
  const shown = full.length > 18 ? '…' + full.slice(-12) : full;
  const idPart = `<span class="agent-id muted" title="${esc(full)}">(${esc(shown)})</span>`;
  return address ? `<span class="agent-label">${esc(address)} ${idPart}</span>`
    : `<span class="agent-label mono" title="${esc(full)}">${esc(full)}</span>`;
}
function agentLink(address, id) {
  return `<a href="#/agents/${enc(id)}" data-agent-link="${esc(id)}">${agentLabel(address, id)}</a>`;
}

function stateBadge(state) {
  const colour = {
    TASK_RUNNING: 'green', TASK_STAGING: 'blue', TASK_STARTING: 'blue',
    TASK_KILLING: 'amber', TASK_UNREACHABLE: 'purple', TASK_FINISHED: '',
    TASK_FAILED: 'red', TASK_ERROR: 'red', TASK_KILLED: 'amber', TASK_LOST: 'red',
    TASK_DROPPED: 'red', TASK_GONE: 'red', TASK_GONE_BY_OPERATOR: 'red',
    active: 'green', inactive: 'amber', disconnected: 'amber', unreachable: 'red',
    completed: '',
  }[state] || '';
  const label = stateLabel(state);
  return `<span class="badge ${colour}" data-state="${esc(state)}">${esc(label)}</span>`;
}

// A usage bar: allocated, then offered, then unavailable (on agents that are
// away: it cannot be offered, so it is not shown as idle); the rest is idle.
function bar(used, offered, total, unavailable) {
  if (!total) return '';
  const u = Math.min(100, 100 * used / total);
  const o = Math.min(100 - u, 100 * (offered || 0) / total);
  const x = Math.min(100 - u - o, 100 * (unavailable || 0) / total);
  const away = x > 0 ? `<i class="away" style="left:${u + o}%;width:${x}%"></i>` : '';
  const tip = `allocated ${Math.round(u)}%, offered ${Math.round(o)}%` + (x > 0 ? `, unavailable ${Math.round(x)}%` : '');
  return `<div class="bar" title="${tip}"><i style="width:${u}%"></i><i class="off" style="left:${u}%;width:${o}%"></i>${away}</div>`;
}

// What an agent holds beyond its tasks and offers: idle while it is active,
// unavailable while it is away.
function agentSpare(a, n) {
  const spare = Math.max(0, a.total[n] - a.used[n] - a.offered[n]);
  return a.active ? { free: spare, unavailable: 0 } : { free: 0, unavailable: spare };
}

function usedOf(name, used, total) {
  return `${fmtRes(name, used)} <span class="muted">/ ${fmtRes(name, total)}</span>`;
}

// A table. A header is a label, or [label, class, sort key]. With `sort`
// (from sortOf), a header with a key is a button that sorts by it: the
// first click picks the column (numbers and times largest first, text A to
// Z), the next reverses it. The order lives in the page's hash (`param`),
// so it survives the live refreshes and a reload.
function table(headers, rows, empty, sort) {
  const head = headers.map(h => {
    const [label, cls, key] = Array.isArray(h) ? h : [h, '', null];
    if (!sort || !key) return `<th class="${cls || ''}">${esc(label)}</th>`;
    const on = sort.key === key;
    const aria = on ? (sort.desc ? 'descending' : 'ascending') : 'none';
    const first = /num/.test(cls || '') || TIME_KEYS.has(key) ? '-' : '';
    const arrow = on ? (sort.desc ? '▼' : '▲') : '';
    const tip = on ? `Sorted by ${label.toLowerCase()}, ${aria}; click to reverse` : `Sort by ${label.toLowerCase()}`;
    return `<th class="${cls || ''} sortable${on ? ' sorted' : ''}" aria-sort="${aria}"><button type="button" class="sort"
      data-sort-param="${esc(sort.param)}" data-sort-key="${esc(key)}" data-sort-first="${first}"
      data-sort-reset="${esc(sort.reset || '')}" title="${esc(tip)}">${esc(label)}<span class="arrow" aria-hidden="true">${arrow}</span></button></th>`;
  }).join('');
  const body = rows.length
    ? rows.join('')
    : `<tr><td class="empty" colspan="${headers.length}">${esc(empty || 'Nothing here.')}</td></tr>`;
  return `<div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

// Columns whose first click sorts newest first.
const TIME_KEYS = new Set(['updated', 'registered']);

// The order a table shows: the hash's `param` (`key` or `-key`), else
// `fallback`. `reset`: the hash param of the table's pager, which a new
// order sends back to the first page.
function sortOf(route, param, fallback, reset) {
  const value = route.params[param] || fallback;
  const desc = value.startsWith('-');
  return { param, value, key: desc ? value.slice(1) : value, desc, reset: reset || '', explicit: !!route.params[param] };
}

// Sorts `items` in the browser by `keys[sort.key](item)` (a number or a
// string), for the tables that are not paged on the server; ties keep order.
function sortItems(items, sort, keys) {
  const key = keys[sort.key];
  if (!key) return items;
  const dir = sort.desc ? -1 : 1;
  return items.map((item, i) => [key(item), i, item]).sort((a, b) => {
    const [x, y] = [a[0], b[0]];
    const c = typeof x === 'number' && typeof y === 'number' ? x - y
      : String(x).localeCompare(String(y), undefined, { numeric: true, sensitivity: 'base' });
    return c * dir || a[1] - b[1];
  }).map(entry => entry[2]);
}

document.addEventListener('click', ev => {
  const button = ev.target.closest && ev.target.closest('button[data-sort-key]');
  if (!button || !current.route) return;
  const { sortParam: param, sortKey: key, sortFirst: first, sortReset: reset } = button.dataset;
  const th = button.closest('th');
  const on = th && th.getAttribute('aria-sort');
  const value = on === 'descending' ? key : on === 'ascending' ? '-' + key : first + key;
  const params = { ...parseHash().params, [param]: value };
  if (reset) delete params[reset];
  live.focusSort = { param, key };
  setParams(current.route.parts, params);
});

// The live refresh re-renders the tables: give the focus back to the sort
// button that had it, so the keyboard keeps its place.
function keepSortFocus(before) {
  const want = before || live.focusSort;
  live.focusSort = null;
  if (!want) return;
  const button = document.querySelector(
    `button[data-sort-param="${CSS.escape(want.param)}"][data-sort-key="${CSS.escape(want.key)}"]`);
  if (button) button.focus();
}

function pager(page, onPage) {
  const from = page.total ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  const id = 'p' + Math.random().toString(36).slice(2);
  setTimeout(() => {
    const el = document.getElementById(id);
    if (!el) return;
    el.querySelector('[data-prev]').onclick = () => onPage(Math.max(0, page.offset - page.limit));
    el.querySelector('[data-next]').onclick = () => onPage(page.offset + page.limit);
  });
  return `<div class="pager" id="${id}"><span>${num(from)}–${num(to)} of ${num(page.total)}</span>
    <button data-prev ${page.offset > 0 ? '' : 'disabled'}>‹ Prev</button>
    <button data-next ${to < page.total ? '' : 'disabled'}>Next ›</button></div>`;
}

// Hash routes: "#/tasks/fw/t1?state=TASK_RUNNING" -> parts and params.
function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(qs || ''));
  return { parts, params };
}
function setParams(parts, params) {
  const path = '#/' + parts.map(enc).join('/');
  const target = path + query(params);
  if (location.hash !== target) location.hash = target;
}

// ---------------------------------------------------------------------------
// Polling, staleness and the leader
// ---------------------------------------------------------------------------

const live = {
  generation: 0,       // bumps on every route change; late answers are dropped
  timer: null,
  delay: 2000,
  base: 2000,
  lastOk: null,
  failing: null,       // the last error, while refreshes fail
  master: null,
  redirecting: false,
};

function banner(kind, html) {
  const el = $('#banner');
  if (!kind) { el.hidden = true; el.className = 'banner'; return; }
  el.hidden = false;
  el.className = 'banner ' + kind;
  el.innerHTML = html;
}

// Slower polling on big clusters, as Mesos' UI does (but never slower than 10 s).
function baseDelay(agents) {
  if (agents > 5000) return 10000;
  if (agents > 1000) return 5000;
  return 2000;
}

function showStaleness() {
  const main = $('#view');
  if (live.redirecting) return;
  if (!live.failing) {
    main.classList.remove('stale');
    if ($('#banner').classList.contains('stale')) banner(null);
    return;
  }
  main.classList.add('stale');
  const since = live.lastOk ? `last update ${ago((Date.now() - live.lastOk) / 1000)} ago` : 'no data yet';
  banner('stale', `Stale: ${esc(since)}. ${esc(live.failing)}; retrying with back-off.`);
}

function showMaster(m) {
  const parts = [];
  if (m.cluster) parts.push(`cluster <b>${esc(m.cluster)}</b>`);
  if (m.leader) parts.push(`leader ${esc(m.leader)}`);
  if (m.uptime_secs != null) parts.push(`up ${esc(ago(m.uptime_secs))}`);
  parts.push(`v${esc(m.version)}`);
  $('#master-meta').innerHTML = parts.join(' · ');
}

// A follower sends the user to the leader; with no leader known, it waits.
function handleFollower(m) {
  if (m.leader) {
    live.redirecting = true;
    banner('follower', `This master is not the leader. The leading master is
      <a id="leader-link" href="//${esc(m.leader)}/${esc(location.hash)}">${esc(m.leader)}</a>; taking you there…`);
    setTimeout(() => location.replace(`//${m.leader}/${location.hash}`), 1500);
  } else {
    banner('follower', 'This master is not the leader, and no leading master is elected yet. Waiting for one…');
  }
}

async function refresh(gen) {
  try {
    const m = await getJSON('/api/master');
    if (gen !== live.generation) return;
    live.master = m;
    showMaster(m);
    if (!m.elected) {
      handleFollower(m);
      live.failing = null;
      schedule(gen, live.base);
      return;
    }
    if ($('#banner').classList.contains('follower')) banner(null);
    const view = current.view;
    const data = await view.load(current.route);
    if (gen !== live.generation) return;
    const focused = document.activeElement && document.activeElement.dataset &&
      document.activeElement.dataset.sortKey
      ? { param: document.activeElement.dataset.sortParam, key: document.activeElement.dataset.sortKey } : null;
    view.update(data, current.route);
    keepSortFocus(focused);
    live.lastOk = Date.now();
    live.failing = null;
    live.delay = live.base;
  } catch (e) {
    if (gen !== live.generation) return;
    if (auth.waiting) return; // the login form is up; no polling until then
    if (e instanceof HttpError && (e.status === 400 || e.status === 404)) {
      // Not transient: say so where the data would be.
      const slot = $('#view .data');
      if (slot) slot.innerHTML = `<p class="notice err">${esc(e.message)}</p>`;
      live.failing = null;
    } else {
      live.failing = e.message || String(e);
      live.delay = Math.min(MAX_DELAY, live.delay * 2);
    }
  }
  showStaleness();
  schedule(gen, live.delay);
}

function schedule(gen, delay) {
  clearTimeout(live.timer);
  if (gen !== live.generation) return;
  live.timer = setTimeout(() => refresh(gen), delay);
}

// Re-run the current view's load at once (after a filter changed).
function refreshNow() {
  live.generation += 1;
  refresh(live.generation);
}

setInterval(showStaleness, 1000);

// ---------------------------------------------------------------------------
// Operator control: a button that asks first ("are you sure?" inline), then
// sends one call to the master's operator API (POST /api/v1, Mesos' JSON)
// and shows the master's refusal, if any. The frame is mounted once with the
// page head, so the polling refreshes never reset a question being asked.
// ---------------------------------------------------------------------------

async function operatorCall(call) {
  const response = await apiFetch('/api/v1', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
    body: JSON.stringify(call),
  });
  if (response.status === 401) {
    needLogin(auth.header ? 'Your credential was refused; log in again.'
      : 'The master needs to know who you are for this: log in.');
  }
  if (!response.ok) {
    let text = '';
    try { text = (await response.text()).trim(); } catch (_) { text = ''; }
    throw new HttpError(response.status, `${response.status} ${text || response.statusText}`);
  }
}

// What the ACLs let this viewer do to a framework ({kill_tasks, teardown}),
// so that the page offers only what the master would accept. Advice only:
// the master still refuses (403) a call the ACLs do not allow, and says why.
function permissions(frameworkId) {
  return getJSON('/api/permissions' + query({ framework_id: frameworkId }));
}

// The action's frame: `id`-button asks, `id`-yes acts, `id`-no cancels,
// `id`-status says what happened (kept visible when the buttons go).
function actionFrame(id, label, question, yes) {
  return `<span class="grow"></span><span class="action" id="${id}">
    <span id="${id}-controls" hidden>
      <button class="danger" id="${id}-button">${esc(label)}</button>
      <span class="confirm" id="${id}-confirm" hidden>${esc(question)}
        <button class="danger solid" id="${id}-yes">${esc(yes)}</button>
        <button id="${id}-no">Cancel</button></span>
    </span>
    <span class="action-status" id="${id}-status"></span></span>`;
}

// Shows the action while `available`; `call()` makes the call when the user
// confirms, and `sent` is what to say once the master took it.
function bindAction(id, available, call, sent) {
  const el = document.getElementById(id);
  if (!el) return;
  const part = name => document.getElementById(`${id}-${name}`);
  el.call = call;
  part('controls').hidden = !available;
  if (el.dataset.bound) return;
  el.dataset.bound = '1';
  const status = (text, cls) => { part('status').textContent = text; part('status').className = 'action-status ' + (cls || ''); };
  const asking = on => { part('button').hidden = on; part('confirm').hidden = !on; };
  part('button').onclick = () => { status(''); asking(true); part('yes').focus(); };
  part('no').onclick = () => asking(false);
  part('yes').onclick = async () => {
    part('yes').disabled = true;
    status('Sending…', 'muted');
    try {
      await operatorCall(el.call());
      status(sent, 'ok');
      refreshNow();
    } catch (e) {
      status(`The master refused: ${e.message}`, 'err');
    } finally {
      part('yes').disabled = false;
      asking(false);
    }
  };
}

// ---------------------------------------------------------------------------
// Views: each has mount(route) (static frame), load(route) and update(data)
// ---------------------------------------------------------------------------

const views = {};

// Dashboard --------------------------------------------------------------

views.dashboard = {
  nav: 'dashboard',
  mount() {
    return `<div class="page-head"><h1>Dashboard</h1><span class="sub" id="dash-sub"></span></div>
      <div class="data" id="dash"></div>`;
  },
  async load(route) {
    const sort = sortOf(route, 'sort', TASK_SORT);
    const [overview, util, tasks] = await Promise.all([
      getJSON('/api/overview'),
      getJSON('/api/utilisation'),
      getJSON('/api/tasks' + query({ state: 'active', limit: 10, sort: sort.explicit ? sort.value : '' })),
    ]);
    return { overview, util, tasks };
  },
  update({ overview: o, util, tasks }, route) {
    live.base = baseDelay(o.agents.active + o.agents.inactive + o.agents.unreachable);
    const m = o.master;
    $('#dash-sub').textContent = `${m.cluster} · leader ${m.leader}`;
    const stat = (n, label, cls, id) =>
      `<div class="stat ${n && cls ? cls : ''}"><div class="n" id="${id}">${num(n)}</div><div class="l">${esc(label)}</div></div>`;
    const res = ['cpus', 'mem', 'disk', 'gpus'].map(name => {
      const r = o.resources[name];
      return `<tr><td>${esc({ cpus: 'CPUs', mem: 'Memory', disk: 'Disk', gpus: 'GPUs' }[name])}</td>
        <td class="num">${fmtRes(name, r.total)}</td>
        <td class="num">${fmtRes(name, r.allocated)}</td>
        <td class="num">${fmtRes(name, r.offered)}</td>
        <td class="num${r.unavailable ? ' away' : ''}" id="res-unavailable-${name}">${fmtRes(name, r.unavailable)}</td>
        <td class="num" id="res-idle-${name}">${fmtRes(name, r.idle)}</td>
        <td class="opt" style="width:22%">${bar(r.allocated, r.offered, r.total, r.unavailable)}</td></tr>`;
    });
    const order = s => (TASK_STATES.indexOf(s) + 100) % 100;
    const states = Object.entries(o.tasks).sort(([a], [b]) => order(a) - order(b))
      .map(([s, n]) => `<span class="s">${stateBadge(s)}<b data-count="${esc(s)}">${num(n)}</b></span>`).join('');
    const taskRows = tasks.items.map(taskRow);
    $('#dash').innerHTML = `
      <div class="grid">
        <div class="card"><h2>Leading master</h2><dl class="kv">
          <dt>Cluster</dt><dd>${esc(m.cluster)}</dd>
          <dt>Leader</dt><dd>${esc(m.leader)}</dd>
          <dt>Uptime</dt><dd>${esc(ago(m.uptime_secs))}</dd>
          <dt>Started</dt><dd>${when(m.start_time)}</dd>
          <dt>Version</dt><dd>${esc(m.version)}</dd>
          ${m.epoch != null ? `<dt>Epoch</dt><dd>${esc(m.epoch)}</dd>` : ''}
          ${m.recovering_agents ? `<dt>Recovering</dt><dd>${num(m.recovering_agents)} agents</dd>` : ''}
        </dl></div>
        <div class="card"><h2><a href="#/agents">Agents</a></h2><div class="stats">
          ${stat(o.agents.active, 'active', '', 'agents-active')}
          ${stat(o.agents.inactive, 'inactive', 'warn', 'agents-inactive')}
          ${stat(o.agents.unreachable, 'unreachable', 'bad', 'agents-unreachable')}
        </div></div>
        <div class="card"><h2><a href="#/frameworks">Frameworks</a></h2><div class="stats">
          ${stat(o.frameworks.active, 'active', '', 'frameworks-active')}
          ${stat(o.frameworks.inactive, 'inactive', 'warn', 'frameworks-inactive')}
          ${stat(o.frameworks.completed, 'completed', '', 'frameworks-completed')}
        </div></div>
        <div class="card"><h2><a href="#/offers">Offers</a> and <a href="#/roles">roles</a></h2><div class="stats">
          ${stat(o.outstanding_offers, 'outstanding offers', '', 'offers-outstanding')}
          ${stat(o.roles, 'roles', '', 'roles-count')}
        </div></div>
      </div>
      <div class="card section"><h2><a href="#/tasks">Tasks</a> by state</h2><div class="states">${states}</div></div>
      <div class="grid two">
        <div class="card"><h2>Resources</h2>${table(['', ['Total', 'num'], ['Allocated', 'num'],
          ['Offered', 'num'], ['Unavailable', 'num'], ['Idle', 'num'], ['', 'opt']], res)}</div>
        <div class="card chart"><h2>Allocated, last hour</h2>${chart(util)}</div>
      </div>
      <div class="card section"><h2>Active tasks <span class="muted">(${num(tasks.total)})</span></h2>
        ${table(TASK_HEADERS, taskRows, 'No active tasks.', sortOf(route, 'sort', TASK_SORT))}
        ${tasks.total > tasks.items.length ? `<p><a href="#/tasks?state=active">All ${num(tasks.total)} active tasks ›</a></p>` : ''}
      </div>`;
  },
};

// Utilisation over the last hour: allocated share of each resource, in %.
function chart(util) {
  const samples = util.samples || [];
  const series = [['cpus', '#2563eb', 'CPUs'], ['mem', '#16a34a', 'Memory'],
    ['disk', '#d97706', 'Disk'], ['gpus', '#9333ea', 'GPUs']]
    .filter(([name]) => name !== 'gpus' || samples.some(s => s.resources.gpus.total > 0));
  const W = 600, H = 170, L = 34, R = 8, T = 8, B = 22;
  const now = Date.now() / 1000;
  const x = t => L + (W - L - R) * Math.max(0, Math.min(1, 1 - (now - t) / 3600));
  const y = p => T + (H - T - B) * (1 - p / 100);
  let svg = '';
  for (const p of [0, 25, 50, 75, 100]) {
    svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${y(p)}" y2="${y(p)}"/>` +
      `<text x="${L - 4}" y="${y(p) + 3}" text-anchor="end">${p}%</text>`;
  }
  for (const m of [60, 45, 30, 15, 0]) {
    svg += `<text x="${x(now - m * 60)}" y="${H - 6}" text-anchor="middle">${m ? `-${m} min` : 'now'}</text>`;
  }
  for (const [name, colour] of series) {
    const points = samples.map(s => {
      const r = s.resources[name];
      const p = r.total > 0 ? 100 * r.allocated / r.total : 0;
      return `${x(s.time).toFixed(1)},${y(p).toFixed(1)}`;
    });
    if (points.length === 1) {
      const [px, py] = points[0].split(',');
      svg += `<circle cx="${px}" cy="${py}" r="3" fill="${colour}"/>`;
    } else if (points.length > 1) {
      svg += `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.join(' ')}"/>`;
    }
  }
  const legend = series.map(([, colour, label]) => `<span><i style="background:${colour}"></i>${label}</span>`).join('');
  const note = samples.length < 2
    ? `<span>one sample every ${esc(util.interval_secs)} s; the line grows as they come</span>` : '';
  return `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="allocation over the last hour">${svg}</svg>
    <div class="legend">${legend}${note}</div>`;
}

// Agents ------------------------------------------------------------------

function agentCells(a) {
  const attrs = Object.entries(a.attributes || {})
    .map(([k, v]) => `<span class="chip">${esc(k)}: ${esc(v)}</span>`).join('');
  return `<td>${agentLink(a.address, a.id)}</td>
    <td>${stateBadge(a.status)}</td>
    <td class="num">${usedOf('cpus', a.used.cpus, a.total.cpus)}${bar(a.used.cpus, a.offered.cpus, a.total.cpus, agentSpare(a, 'cpus').unavailable)}</td>
    <td class="num">${usedOf('mem', a.used.mem, a.total.mem)}${bar(a.used.mem, a.offered.mem, a.total.mem, agentSpare(a, 'mem').unavailable)}</td>
    <td class="num opt">${usedOf('disk', a.used.disk, a.total.disk)}</td>
    <td class="num opt">${a.total.gpus ? usedOf('gpus', a.used.gpus, a.total.gpus) : '–'}</td>
    <td class="num">${num(a.tasks)}</td>
    <td class="wrap opt">${attrs || '<span class="muted">–</span>'}</td>
    <td class="opt">${when(a.registered_time)}</td>`;
}
const AGENT_HEADERS = [['Agent', '', 'hostname'], ['Status', '', 'status'], ['CPUs', 'num', 'cpus'],
  ['Memory', 'num', 'mem'], ['Disk', 'num opt', 'disk'], ['GPUs', 'num opt', 'gpus'], ['Tasks', 'num', 'tasks'],
  ['Attributes', 'opt'], ['Registered', 'opt', 'registered']];
// Default orders, as the master sorts when asked for none.
const AGENT_SORT = 'hostname';
const TASK_SORT = '-updated';
const FW_SORT = '-registered';
const OFFER_SORT = 'agent';

views.agents = {
  nav: 'agents',
  mount(route) {
    const p = route.params;
    return `<div class="page-head"><h1>Agents</h1></div>
      <div class="filters">
        <select id="f-status"><option value="">All states</option>
          ${['active', 'disconnected', 'unreachable'].map(s => `<option ${p.status === s ? 'selected' : ''}>${s}</option>`).join('')}
        </select>
        <input type="search" id="f-q" placeholder="Search id or hostname" value="${esc(p.q || '')}">
      </div><div class="data" id="list"></div>`;
  },
  bind(route) { bindFilters(route, ['status', 'q']); },
  load(route) {
    const p = route.params;
    return getJSON('/api/agents' + query({ status: p.status, q: p.q, sort: p.sort, offset: p.offset, limit: PAGE }));
  },
  update(page, route) {
    $('#list').innerHTML = `<div class="card">${table(AGENT_HEADERS,
      page.items.map(a => `<tr data-agent-id="${esc(a.id)}">${agentCells(a)}</tr>`), 'No agents match.',
      sortOf(route, 'sort', AGENT_SORT, 'offset'))}</div>` +
      pager(page, offset => setParams(route.parts, { ...route.params, offset }));
  },
};

views.agent = {
  nav: 'agents',
  mount(route) {
    const id = route.parts[1];
    return `<div class="crumbs"><a href="#/agents">Agents</a> › <span id="crumb-agent" class="mono">${esc(id)}</span></div>
      <div class="page-head"><h1 id="agent-title" class="mono">${esc(id)}</h1><span class="sub mono" id="agent-sub"></span></div>
      <div class="data" id="detail"></div>`;
  },
  async load(route) {
    const id = route.parts[1];
    const { offset, sort } = route.params;
    const [detail, tasks] = await Promise.all([
      getJSON(`/api/agents/${enc(id)}`),
      getJSON('/api/tasks' + query({ agent_id: id, sort, offset, limit: PAGE })),
    ]);
    return { detail, tasks };
  },
  update({ detail, tasks }, route) {
    const a = detail.agent;
    // hostname:port names it; the id goes beside.
    $('#agent-title').textContent = a.address;
    document.title = `Agora · Agent ${a.address}`;
    $('#crumb-agent').textContent = a.address;
    $('#agent-sub').textContent = a.id;
    const resRows = ['cpus', 'mem', 'disk', 'gpus'].filter(n => n !== 'gpus' || a.total.gpus).map(n => {
      const { free, unavailable } = agentSpare(a, n);
      return `<tr><td>${n}</td><td class="num">${fmtRes(n, a.total[n])}</td><td class="num">${fmtRes(n, a.used[n])}</td>
        <td class="num">${fmtRes(n, a.offered[n])}</td>
        <td class="num${unavailable ? ' away' : ''}" id="agent-unavailable-${n}">${fmtRes(n, unavailable)}</td>
        <td class="num">${fmtRes(n, free)}</td></tr>`;
    });
    const fwSort = sortOf(route, 'fsort', 'name');
    const fwRows = sortItems(detail.frameworks, fwSort, {
      id: f => f.id, name: f => f.name, status: f => f.status, tasks: f => f.active_tasks,
      cpus: f => f.used.cpus, mem: f => f.used.mem,
    }).map(f => `<tr><td class="id"><a href="#/frameworks/${enc(f.id)}">${short(f.id)}</a></td>
      <td>${esc(f.name)}</td><td>${stateBadge(f.status)}</td><td class="num">${num(f.active_tasks)}</td>
      <td class="num">${cores(f.used.cpus)}</td><td class="num">${mib(f.used.mem)}</td></tr>`);
    const exSort = sortOf(route, 'esort', 'task');
    const exRows = sortItems(detail.executors, exSort, {
      id: e => e.id, task: e => e.task_name || e.task_id, state: e => stateLabel(e.state), framework: e => e.framework_id,
      cpus: e => e.resources.cpus, mem: e => e.resources.mem,
    }).map(e => `<tr><td class="id mono">${esc(e.id)}</td>
      <td><a href="#/tasks/${enc(e.framework_id)}/${enc(e.task_id)}">${esc(e.task_name || e.task_id)}</a></td>
      <td>${stateBadge(e.state)}</td><td class="id opt">${short(e.framework_id)}</td>
      <td class="num">${cores(e.resources.cpus)}</td><td class="num">${mib(e.resources.mem)}</td>
      <td><a href="#/tasks/${enc(e.framework_id)}/${enc(e.task_id)}">Sandbox</a></td></tr>`);
    const attrs = Object.entries(a.attributes).map(([k, v]) => `<span class="chip">${esc(k)}: ${esc(v)}</span>`).join('') || '–';
    $('#detail').innerHTML = `
      <div class="grid two">
        <div class="card"><h2>Agent</h2><dl class="kv">
          <dt>ID</dt><dd class="mono">${esc(a.id)}</dd>
          <dt>Hostname</dt><dd>${esc(a.hostname)}</dd><dt>Address</dt><dd class="mono">${esc(a.address)}</dd>
          <dt>Status</dt><dd>${stateBadge(a.status)}${a.unreachable_since ? ` since ${when(a.unreachable_since)}` : ''}</dd>
          <dt>Registered</dt><dd>${when(a.registered_time)}</dd><dt>Attributes</dt><dd>${attrs}</dd>
          <dt>Tasks</dt><dd class="states">${Object.entries(detail.task_counts).map(([s, n]) => `<span class="s">${stateBadge(s)}<b>${num(n)}</b></span>`).join('') || '–'}</dd>
        </dl></div>
        <div class="card"><h2>Resources</h2>${table(['', ['Total', 'num'], ['Used', 'num'], ['Offered', 'num'], ['Unavailable', 'num'], ['Free', 'num']], resRows)}</div>
      </div>
      <div class="card section"><h2>Frameworks</h2>${table([['ID', '', 'id'], ['Name', '', 'name'], ['Status', '', 'status'],
        ['Active tasks', 'num', 'tasks'], ['CPUs', 'num', 'cpus'], ['Memory', 'num', 'mem']], fwRows, 'No framework runs tasks here.', fwSort)}</div>
      <div class="card section"><h2>Executors <span class="muted">(${num(detail.executors_total)})</span></h2>${table([['Executor', '', 'id'],
        ['Task', '', 'task'], ['State', '', 'state'], ['Framework', 'opt', 'framework'], ['CPUs', 'num', 'cpus'], ['Memory', 'num', 'mem'], ''],
        exRows, 'No executors.', exSort)}</div>
      <div class="card section"><h2>Tasks</h2>${table(TASK_HEADERS, tasks.items.map(taskRow), 'No tasks on this agent.',
        sortOf(route, 'sort', TASK_SORT, 'offset'))}
        ${pager(tasks, offset => setParams(route.parts, { ...route.params, offset }))}</div>`;
  },
};

// Frameworks --------------------------------------------------------------

const FW_HEADERS = [['ID', '', 'id'], ['Name', '', 'name'], ['Status', '', 'status'], ['User', 'opt', 'user'],
  ['Principal', 'opt', 'principal'], ['Roles', '', 'roles'], ['Active tasks', 'num', 'tasks'], ['CPUs', 'num', 'cpus'],
  ['Memory', 'num', 'mem'], ['Disk', 'num opt', 'disk'], ['GPUs', 'num opt', 'gpus'], ['Offers', 'num opt', 'offers'],
  ['Registered', 'opt', 'registered']];
function fwCells(f) {
  return `<td class="id"><a href="#/frameworks/${enc(f.id)}">${short(f.id)}</a></td>
    <td><a href="#/frameworks/${enc(f.id)}">${esc(f.name)}</a></td><td>${stateBadge(f.status)}</td>
    <td class="opt">${esc(f.user)}</td><td class="opt">${esc(f.principal || '–')}</td>
    <td class="wrap">${f.roles.map(r => `<span class="chip">${esc(r)}</span>`).join('')}</td>
    <td class="num">${num(f.active_tasks)}</td><td class="num">${cores(f.used.cpus)}</td>
    <td class="num">${mib(f.used.mem)}</td><td class="num opt">${mib(f.used.disk)}</td>
    <td class="num opt">${cores(f.used.gpus)}</td><td class="num opt">${num(f.outstanding_offers)}</td>
    <td class="opt">${when(f.registered_time)}</td>`;
}

views.frameworks = {
  nav: 'frameworks',
  mount(route) {
    const st = route.params.status || '';
    const tab = (value, label) => `<a href="#/frameworks${query({ status: value, q: route.params.q, sort: route.params.sort })}" class="${st === value ? 'active' : ''}">${label}</a>`;
    return `<div class="page-head"><h1>Frameworks</h1></div>
      <div class="filters"><div class="tabs">${tab('', 'All')}${tab('active', 'Active')}${tab('inactive', 'Inactive')}${tab('completed', 'Completed')}</div>
      <input type="search" id="f-q" class="wide" placeholder="Search name, id, user or role" value="${esc(route.params.q || '')}"></div>
      <div class="data" id="list"></div>`;
  },
  bind(route) { bindFilters(route, ['q']); },
  load(route) {
    const p = route.params;
    return getJSON('/api/frameworks' + query({ status: p.status, q: p.q, sort: p.sort, offset: p.offset, limit: PAGE }));
  },
  update(page, route) {
    document.querySelectorAll('.tabs a').forEach(a => a.classList.toggle('active',
      new URLSearchParams(a.getAttribute('href').split('?')[1] || '').get('status') === (route.params.status || null)));
    $('#list').innerHTML = `<div class="card">${table(FW_HEADERS,
      page.items.map(f => `<tr data-framework-id="${esc(f.id)}">${fwCells(f)}</tr>`), 'No frameworks match.',
      sortOf(route, 'sort', FW_SORT, 'offset'))}</div>` +
      pager(page, offset => setParams(route.parts, { ...route.params, offset }));
  },
};

views.framework = {
  nav: 'frameworks',
  mount(route) {
    return `<div class="crumbs"><a href="#/frameworks">Frameworks</a> › <span id="crumb-fw">${esc(route.parts[1])}</span></div>
      <div class="page-head"><h1 id="fw-name">Framework</h1><span class="sub mono">${esc(route.parts[1])}</span>
        ${actionFrame('teardown', 'Teardown', 'Tear this framework down and kill all its tasks?', 'Yes, tear it down')}</div>
      <div class="data" id="detail"></div>`;
  },
  async load(route) {
    const id = route.parts[1];
    const p = route.params;
    const [detail, active, done, may] = await Promise.all([
      getJSON(`/api/frameworks/${enc(id)}`),
      getJSON('/api/tasks' + query({ framework_id: id, state: 'active', sort: p.sort, offset: p.offset, limit: PAGE })),
      getJSON('/api/tasks' + query({ framework_id: id, state: 'terminal', sort: p.dsort, offset: p.done, limit: PAGE })),
      permissions(id),
    ]);
    return { detail, active, done, may };
  },
  update({ detail, active, done, may }, route) {
    const f = detail.framework;
    $('#fw-name').textContent = f.name || 'Framework';
    $('#crumb-fw').textContent = f.name || f.id;
    const completed = f.status === 'completed';
    bindAction('teardown', f.status !== 'completed' && may.teardown,
      () => ({ type: 'TEARDOWN', teardown: { framework_id: { value: f.id } } }),
      'Teardown sent: the framework is removed and its tasks are killed.');
    const why = detail.offer_status.map(s => s.reason
      ? `<div class="why" data-role="${esc(s.role)}"><b>${esc(s.role)}</b>: no offers because ${esc(s.explanation || s.reason)}.
          <span class="muted">Last offered ${s.last_offered_secs_ago == null ? 'never' : esc(ago(s.last_offered_secs_ago)) + ' ago'}${s.filtered_agents ? `; filtered on ${num(s.filtered_agents)} agents` : ''}.</span></div>`
      : `<div class="why ok" data-role="${esc(s.role)}"><b>${esc(s.role)}</b>: receiving offers.
          <span class="muted">Last offered ${s.last_offered_secs_ago == null ? 'never' : esc(ago(s.last_offered_secs_ago)) + ' ago'}.</span></div>`).join('');
    const offerSort = sortOf(route, 'osort', OFFER_SORT);
    const offerRows = sortItems(detail.offers, offerSort, OFFER_KEYS).map(offerRow);
    $('#detail').innerHTML = `
      <div class="grid two">
        <div class="card"><h2>Framework</h2><dl class="kv">
          <dt>Status</dt><dd>${stateBadge(f.status)}</dd>
          <dt>User</dt><dd>${esc(f.user || '–')}</dd><dt>Principal</dt><dd>${esc(f.principal || '–')}</dd>
          <dt>Roles</dt><dd>${f.roles.map(r => `<span class="chip">${esc(r)}</span>`).join('') || '–'}</dd>
          <dt>Host</dt><dd>${esc(f.hostname || '–')}</dd>
          <dt>Registered</dt><dd>${when(f.registered_time)}</dd>
          <dt>Failed over</dt><dd>${f.reregistered_time != null ? when(f.reregistered_time) : 'never'}</dd>
          ${completed ? `<dt>Ended</dt><dd id="fw-ended">${f.unregistered_time != null ? `${when(f.unregistered_time)} <span class="muted">(${esc(new Date(f.unregistered_time * 1000).toISOString().replace('T', ' ').slice(0, 19))} UTC)</span>` : 'unknown'}</dd>`
            : f.unregistered_time != null ? `<dt>Disconnected</dt><dd>${when(f.unregistered_time)}</dd>` : ''}
          <dt>Failover timeout</dt><dd>${f.failover_timeout != null ? esc(ago(f.failover_timeout)) : '–'}</dd>
          <dt>Tasks</dt><dd class="states">${Object.entries(detail.task_counts).map(([s, n]) => `<span class="s">${stateBadge(s)}<b>${num(n)}</b></span>`).join('') || '–'}</dd>
        </dl></div>
        <div class="card"><h2>Resources</h2>${table(['', ['Used', 'num'], ['Offered', 'num']],
          ['cpus', 'mem', 'disk', 'gpus'].map(n => `<tr><td>${n}</td><td class="num">${fmtRes(n, f.used[n])}</td><td class="num">${fmtRes(n, f.offered[n])}</td></tr>`))}</div>
      </div>
      ${completed ? '' : `<div class="card section" id="why-card"><h2>Why no offer?</h2>${why || '<p class="muted">No role to explain (not subscribed).</p>'}</div>`}
      ${completed && !active.total ? '' : `<div class="card section"><h2>Active tasks <span class="muted">(${num(active.total)})</span></h2>${table(TASK_HEADERS, active.items.map(taskRow), 'No active tasks.',
        sortOf(route, 'sort', TASK_SORT, 'offset'))}
        ${pager(active, offset => setParams(route.parts, { ...route.params, offset }))}</div>`}
      <div class="card section"><h2>Completed tasks <span class="muted">(${num(done.total)})</span></h2>${table(TASK_HEADERS, done.items.map(taskRow), 'No completed tasks.',
        sortOf(route, 'dsort', TASK_SORT, 'done'))}
        ${pager(done, offset => setParams(route.parts, { ...route.params, done: offset }))}</div>
      ${completed ? '' : `<div class="card section"><h2>Outstanding offers <span class="muted">(${num(f.outstanding_offers)})</span></h2>${table(OFFER_HEADERS, offerRows, 'No outstanding offers.', offerSort)}</div>`}`;
  },
};

// Tasks -------------------------------------------------------------------

const TASK_HEADERS = [['ID', '', 'id'], ['Name', '', 'name'], ['State', '', 'state'], ['Framework', 'opt', 'framework'],
  ['Agent', '', 'agent'], ['CPUs', 'num', 'cpus'], ['Memory', 'num', 'mem'], ['Updated', 'opt', 'updated'], ''];
function taskRow(t) {
  const link = `#/tasks/${enc(t.framework_id)}/${enc(t.id)}`;
  return `<tr data-task-id="${esc(t.id)}"><td class="id"><a href="${link}">${short(t.id)}</a></td>
    <td><a href="${link}">${esc(t.name)}</a></td><td>${stateBadge(t.state)}</td>
    <td class="opt"><a href="#/frameworks/${enc(t.framework_id)}">${esc(t.framework_name || t.framework_id)}</a></td>
    <td>${agentLink(t.agent_address, t.agent_id)}</td>
    <td class="num">${cores(t.resources.cpus)}</td><td class="num">${mib(t.resources.mem)}</td>
    <td class="opt">${when(t.status_time)}</td><td><a href="${link}">Sandbox</a></td></tr>`;
}

views.tasks = {
  nav: 'tasks',
  mount(route) {
    const p = route.params;
    const opts = [['', 'All states'], ['active', 'Active (not terminal)'], ['terminal', 'Terminal']]
      .concat(TASK_STATES.map(s => [s, stateLabel(s)]))
      .map(([v, l]) => `<option value="${v}" ${p.state === v || (!p.state && !v) ? 'selected' : ''}>${esc(l)}</option>`).join('');
    return `<div class="page-head"><h1>Tasks</h1><span class="sub" id="tasks-total"></span></div>
      <div class="filters">
        <select id="f-state">${opts}</select>
        <input type="search" id="f-q" placeholder="Search name or id" value="${esc(p.q || '')}">
        <input type="search" id="f-framework_id" placeholder="Framework id" value="${esc(p.framework_id || '')}">
        <input type="search" id="f-agent_id" placeholder="Agent id" value="${esc(p.agent_id || '')}">
      </div><div class="data" id="list"></div>`;
  },
  bind(route) { bindFilters(route, ['state', 'q', 'framework_id', 'agent_id']); },
  load(route) {
    const p = route.params;
    return getJSON('/api/tasks' + query({
      state: p.state, q: p.q, framework_id: p.framework_id, agent_id: p.agent_id, sort: p.sort, offset: p.offset, limit: PAGE,
    }));
  },
  update(page, route) {
    $('#tasks-total').textContent = `${num(page.total)} matching`;
    $('#list').innerHTML = `<div class="card">${table(TASK_HEADERS, page.items.map(taskRow), 'No tasks match.',
      sortOf(route, 'sort', TASK_SORT, 'offset'))}</div>` +
      pager(page, offset => setParams(route.parts, { ...route.params, offset }));
  },
};

// Filters: inputs write their value into the hash (debounced), which re-routes.
function bindFilters(route, names) {
  for (const name of names) {
    const el = document.getElementById('f-' + name);
    if (!el || el.dataset.bound) continue;
    el.dataset.bound = '1';
    let pending = null;
    const apply = () => {
      const params = { ...parseHash().params, [name]: el.value };
      delete params.offset;
      setParams(route.parts, params);
    };
    el.addEventListener(el.tagName === 'SELECT' ? 'change' : 'input', () => {
      clearTimeout(pending);
      pending = setTimeout(apply, el.tagName === 'SELECT' ? 0 : 300);
    });
  }
}

// Roles and offers ------------------------------------------------------------

views.roles = {
  nav: 'roles',
  mount() { return '<div class="page-head"><h1>Roles</h1></div><div class="data" id="list"></div>'; },
  load() { return getJSON('/api/roles'); },
  update(data, route) {
    const res = r => r ? `${cores(r.cpus)} cpus · ${mib(r.mem)}` : '–';
    const sort = sortOf(route, 'sort', 'name');
    const cpus = r => r ? r.cpus : -1;
    const rows = sortItems(data.roles, sort, {
      name: r => r.name, weight: r => r.weight, frameworks: r => r.frameworks.length,
      allocated: r => cpus(r.allocated), offered: r => cpus(r.offered), reserved: r => cpus(r.reserved),
      consumed: r => r.guarantee ? cpus(r.consumed) : -1, guarantee: r => cpus(r.guarantee), limit: r => cpus(r.limit),
    }).map(r => `<tr data-role="${esc(r.name)}"><td><b>${esc(r.name)}</b></td><td class="num">${num(r.weight, 2)}</td>
      <td class="num">${num(r.frameworks.length)}</td>
      <td class="num">${res(r.allocated)}</td><td class="num">${res(r.offered)}</td><td class="num opt">${res(r.reserved)}</td>
      <td class="num opt">${r.guarantee ? res(r.consumed) : '–'}</td><td class="num">${res(r.guarantee)}</td><td class="num">${res(r.limit)}</td></tr>`);
    $('#list').innerHTML = `<div class="card">${table([['Role', '', 'name'], ['Weight', 'num', 'weight'],
      ['Frameworks', 'num', 'frameworks'], ['Allocated', 'num', 'allocated'], ['Offered', 'num', 'offered'],
      ['Reserved', 'num opt', 'reserved'], ['Quota consumed', 'num opt', 'consumed'], ['Guarantee', 'num', 'guarantee'],
      ['Limit', 'num', 'limit']], rows,
      'No roles yet: a role appears when a framework subscribes to it or it has a weight, quota or reservation.', sort)}</div>`;
  },
};

const OFFER_HEADERS = [['ID', '', 'id'], ['Framework', '', 'framework'], ['Role', '', 'role'], ['Agent', '', 'agent'],
  ['CPUs', 'num', 'cpus'], ['Memory', 'num', 'mem'], ['Disk', 'num opt', 'disk'], ['GPUs', 'num opt', 'gpus']];
// The master's offer order, for the framework page's (unpaged) offers.
const OFFER_KEYS = {
  id: o => o.id, framework: o => o.framework_name || o.framework_id, role: o => o.role, agent: o => o.agent_address,
  cpus: o => o.resources.cpus, mem: o => o.resources.mem, disk: o => o.resources.disk, gpus: o => o.resources.gpus,
};
function offerRow(o) {
  return `<tr><td class="id mono">${short(o.id)}</td>
    <td><a href="#/frameworks/${enc(o.framework_id)}">${esc(o.framework_name || o.framework_id)}</a></td>
    <td><span class="chip">${esc(o.role)}</span></td><td>${agentLink(o.agent_address, o.agent_id)}</td>
    <td class="num">${cores(o.resources.cpus)}</td><td class="num">${mib(o.resources.mem)}</td>
    <td class="num opt">${mib(o.resources.disk)}</td><td class="num opt">${cores(o.resources.gpus)}</td></tr>`;
}

views.offers = {
  nav: 'offers',
  mount() { return '<div class="page-head"><h1>Outstanding offers</h1></div><div class="data" id="list"></div>'; },
  load(route) { return getJSON('/api/offers' + query({ sort: route.params.sort, offset: route.params.offset, limit: PAGE })); },
  update(page, route) {
    $('#list').innerHTML = `<div class="card">${table(OFFER_HEADERS, page.items.map(offerRow), 'No outstanding offers.',
      sortOf(route, 'sort', OFFER_SORT, 'offset'))}</div>` +
      pager(page, offset => setParams(route.parts, { ...route.params, offset }));
  },
};

// Task page: details, sandbox browser and log viewer ---------------------------

views.task = {
  nav: 'tasks',
  mount(route) {
    // Titled by its id (ten instances may share a name), the name beside.
    const [, fw, id] = route.parts;
    return `<div class="crumbs"><a href="#/tasks">Tasks</a> › <a id="crumb-fw" href="#/frameworks/${enc(fw)}">${esc(fw)}</a>
        › <span class="mono" id="crumb-task">${esc(id)}</span></div>
      <div class="page-head"><h1 id="task-title" class="mono">${esc(id)}</h1><span class="sub" id="task-name"></span><span id="task-state"></span>
        ${actionFrame('kill', 'Kill', 'Kill this task?', 'Yes, kill it')}</div>
      <div id="task-notices"><p class="notice err section" id="agent-notice" role="status" hidden></p>
        <p class="notice err section" id="sandbox-notice" role="status" hidden></p></div>
      <div class="data" id="detail"></div>
      <div class="card section" id="viewer-card"><div class="log-head">
        <div class="tabs" id="log-tabs"></div><span class="grow"></span>
        <button id="log-earlier" disabled>Load earlier</button>
        <label class="follow" id="log-follow-label"><input type="checkbox" id="log-follow" checked> Follow <span class="dot" id="log-dot"></span></label>
        <span class="complete" id="log-complete" hidden>complete</span>
        <a id="log-download" href="#">Download</a></div>
        <pre class="log" id="log"></pre><div class="log log-empty" id="log-empty" hidden></div>
        <div class="muted" id="log-status"></div></div>
      <div class="card section"><h2>Sandbox</h2><div id="sandbox"><p class="muted">Loading…</p></div></div>`;
  },
  async load(route) {
    const [, fw, id] = route.parts;
    const [task, may] = await Promise.all([getJSON(`/api/tasks/${enc(fw)}/${enc(id)}`), permissions(fw)]);
    return Object.assign(task, { may });
  },
  update(t, route) {
    $('#task-title').textContent = t.id;
    document.title = `Agora · Task ${t.id}`;
    $('#task-name').textContent = t.name && t.name !== t.id ? t.name : '';
    $('#crumb-fw').textContent = t.framework_name || t.framework_id;
    $('#task-state').innerHTML = stateBadge(t.state);
    // The sandbox is read through the agent: say at the top when it cannot be.
    const notice = $('#agent-notice');
    const why = {
      disconnected: 'is disconnected from the master',
      unreachable: 'is unreachable: the master has lost contact with it',
      unknown: 'is no longer known to the master',
    }[t.agent_status];
    notice.hidden = !why;
    if (why) {
      notice.innerHTML = `The agent ${agentLink(t.agent_address, t.agent_id)} ${why}, so this task's sandbox
        (stdout, stderr and its files) cannot be read until it is back. The task's state below is the master's last word.`;
    }
    bindAction('kill', !TERMINAL.has(t.state) && t.may.kill_tasks,
      () => ({ type: 'KILL_TASK', kill_task: { task_id: { value: t.id }, framework_id: { value: t.framework_id }, reason: 'killed from the web UI' } }),
      'Kill sent: the task ends TASK_KILLED.');
    $('#detail').innerHTML = `<div class="grid two"><div class="card"><h2>Task</h2><dl class="kv">
        <dt>ID</dt><dd class="mono">${esc(t.id)}</dd><dt>State</dt><dd>${stateBadge(t.state)}${t.healthy == null ? '' : t.healthy ? ' <span class="badge green">healthy</span>' : ' <span class="badge red">unhealthy</span>'}</dd>
        <dt>Message</dt><dd>${esc(t.message || '–')}</dd><dt>Updated</dt><dd>${when(t.status_time)}</dd>
        <dt>Framework</dt><dd><a href="#/frameworks/${enc(t.framework_id)}">${esc(t.framework_name || t.framework_id)}</a></dd>
        <dt>Name</dt><dd>${esc(t.name || '–')}</dd>
        <dt>Agent</dt><dd>${agentLink(t.agent_address, t.agent_id)} ${t.agent_status !== 'active' ? stateBadge(t.agent_status === 'unknown' ? 'gone' : t.agent_status) : ''}</dd>
        <dt>Executor</dt><dd class="mono">${esc(t.executor_id)}</dd><dt>Role</dt><dd>${esc(t.role || '–')}</dd></dl></div>
      <div class="card"><h2>Resources</h2>${table(['', ['Allocated', 'num']],
        ['cpus', 'mem', 'disk', 'gpus'].map(n => `<tr><td>${n}</td><td class="num">${fmtRes(n, t.resources[n])}</td></tr>`))}</div></div>`;
    sandbox.open(t, route);
  },
  unmount() { sandbox.close(); },
};

// Reads files through the master: /agents/{agent}/files/{browse,read,download}.
const sandbox = {
  // `gen` drops late answers for the file shown, `browseGen` for the
  // listing: apart, so that opening a file does not drop the listing.
  task: null, dir: '', file: null, gen: 0, browseGen: 0,
  filesUrl(kind, params) { return `/agents/${enc(this.task.agent_id)}/files/${kind}` + query(params); },
  open(task, route) {
    const first = !this.task || this.task.id !== task.id || this.task.framework_id !== task.framework_id;
    this.task = task;
    if (first) {
      this.dir = route.params.dir || '';
      this.browse();
      this.show(route.params.file || 'stdout');
    } else {
      this.browse();
    }
  },
  close() { this.gen += 1; this.browseGen += 1; this.task = null; clearTimeout(this.timer); this.tailing = false; },
  path(rel) { return this.task.sandbox + (rel ? '/' + rel : ''); },
  async browse() {
    const el = $('#sandbox');
    if (!el || !this.task) return;
    this.browseGen += 1;
    const gen = this.browseGen;
    try {
      const entries = await getJSON(this.filesUrl('browse', { path: this.path(this.dir) }));
      if (gen !== this.browseGen) return;
      const crumbs = ['<a href="#" data-dir="">sandbox</a>'];
      let acc = '';
      for (const part of this.dir.split('/').filter(Boolean)) {
        acc = acc ? acc + '/' + part : part;
        crumbs.push(`<a href="#" data-dir="${esc(acc)}">${esc(part)}</a>`);
      }
      const rows = (entries || []).map(e => {
        const name = String(e.path).split('/').pop();
        const rel = this.dir ? this.dir + '/' + name : name;
        const isDir = String(e.mode || '').startsWith('d');
        const open = isDir
          ? `<a href="#" data-dir="${esc(rel)}">${esc(name)}/</a>`
          : `<a href="#" data-file="${esc(rel)}">${esc(name)}</a>`;
        return `<tr><td class="mono">${esc(e.mode || '')}</td><td>${open}</td><td class="num">${isDir ? '–' : bytes(e.size)}</td>
          <td class="opt">${when(e.mtime)}</td>
          <td>${isDir ? '' : `<a href="${esc(this.filesUrl('download', { path: this.path(rel) }))}" download>Download</a>`}</td></tr>`;
      });
      el.innerHTML = `<div class="sandbox-path">${crumbs.join(' / ')}</div>` +
        table([['Mode', 'opt'], 'Name', ['Size', 'num'], ['Modified', 'opt'], ''], rows, 'Empty directory.');
      el.querySelectorAll('[data-dir]').forEach(a => a.onclick = ev => { ev.preventDefault(); this.dir = a.dataset.dir; this.browse(); });
      el.querySelectorAll('[data-file]').forEach(a => a.onclick = ev => { ev.preventDefault(); this.show(a.dataset.file); });
    } catch (e) {
      if (gen !== this.browseGen) return;
      el.innerHTML = `<p class="notice err">The sandbox could not be listed through the master: ${esc(e.message)}</p>`;
    }
  },
  // Whether the task has ended: its files are then complete, nothing is followed.
  done() { return !!this.task && TERMINAL.has(this.task.state); },
  // A problem reading the sandbox, said at the top of the page (null: none).
  problem(html) {
    const el = $('#sandbox-notice');
    if (!el) return;
    el.hidden = !html;
    el.innerHTML = html || '';
  },
  // Shows the viewer's state: following (live dot), or complete; and for an
  // empty file, says so instead of a bare black box.
  render() {
    const log = $('#log');
    if (!log) return;
    const done = this.done();
    $('#log-follow-label').hidden = done;
    $('#log-complete').hidden = !done;
    log.classList.toggle('done', done);
    const empty = this.end === 0 && log.textContent === '';
    const box = $('#log-empty');
    log.hidden = empty;
    box.hidden = !empty;
    if (empty) {
      box.textContent = this.failed ? `${this.file} could not be read: see the notice at the top of the page.`
        : done ? `${this.file} is empty.` : `${this.file} is empty so far; what the task writes appears here.`;
    }
  },
  // Shows a file from its end, then follows it while "Follow" is on and
  // the task runs.
  async show(rel) {
    this.gen += 1;
    clearTimeout(this.timer);
    const gen = this.gen;
    this.file = rel;
    this.start = 0; this.end = 0; this.tailing = false; this.failed = false;
    const tabs = ['stdout', 'stderr'].concat(rel === 'stdout' || rel === 'stderr' ? [] : [rel]);
    $('#log-tabs').innerHTML = tabs.map(f => `<a href="#" data-log="${esc(f)}" class="${f === rel ? 'active' : ''}">${esc(f)}</a>`).join('');
    $('#log-tabs').querySelectorAll('[data-log]').forEach(a => a.onclick = ev => { ev.preventDefault(); this.show(a.dataset.log); });
    $('#log-download').href = this.filesUrl('download', { path: this.path(rel) });
    $('#log-earlier').onclick = () => this.earlier();
    $('#log-follow').onchange = () => { if ($('#log-follow').checked) this.tail(gen); };
    const log = $('#log');
    log.textContent = '';
    $('#log-status').textContent = '';
    this.render();
    try {
      const size = (await getJSON(this.filesUrl('read', { path: this.path(rel), offset: -1 }))).offset;
      if (gen !== this.gen) return;
      this.start = Math.max(0, size - LOG_CHUNK);
      this.end = this.start;
      await this.readMore(gen);
      this.problem(null);
      this.status();
      this.tail(gen);
    } catch (e) {
      if (gen !== this.gen) return;
      log.textContent = '';
      this.failed = true;
      this.problem(`${esc(rel)} could not be read through the master: ${esc(e.message)}.` +
        (this.task.agent_status === 'active' ? '' : ' Its agent is away (see above).'));
      this.render();
      $('#log-status').textContent = '';
      // The file may not exist yet (a task just starting), or the agent may
      // come back: try again.
      this.timer = setTimeout(() => { if (gen === this.gen) this.show(rel); }, 2000);
    }
  },
  async readMore(gen) {
    // At most 16 chunks per round, so a fast writer cannot starve the page.
    for (let i = 0; i < 16; i += 1) {
      const got = await getJSON(this.filesUrl('read', { path: this.path(this.file), offset: this.end, length: LOG_CHUNK }));
      if (gen !== this.gen) return;
      const data = got.data || '';
      // `length`: the bytes of the file `data` stands for (Mesos' agents
      // do not say; then count its UTF-8 bytes).
      const n = got.length != null ? got.length : new TextEncoder().encode(data).length;
      if (n === 0) return;
      const log = $('#log');
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.append(document.createTextNode(data));
      this.end = (got.offset != null ? got.offset : this.end) + n;
      this.trim();
      if (atBottom) log.scrollTop = log.scrollHeight;
      if (n < LOG_CHUNK) return;
    }
  },
  // Keep at most LOG_KEEP bytes on screen: drop from the front.
  trim() {
    const log = $('#log');
    if (this.end - this.start <= LOG_KEEP) return;
    const text = log.textContent;
    const drop = text.length - Math.floor(LOG_KEEP / 2);
    if (drop > 0) {
      log.textContent = text.slice(drop);
      this.start = this.end - new TextEncoder().encode(log.textContent).length;
    }
  },
  tail(gen) {
    clearTimeout(this.timer);
    const follow = $('#log-follow');
    // An ended task writes no more: what was read is all there is.
    if (!follow || !follow.checked || gen !== this.gen || this.done()) {
      this.tailing = false;
      this.dot(false);
      this.render();
      return;
    }
    this.tailing = true;
    // While its agent is away nothing new can arrive: not live, but the
    // reads go on, so that the log resumes when the agent is back.
    const away = this.task.agent_status !== 'active';
    this.dot(!away);
    if (away) $('#log-status').textContent = `${this.file}: not followed while the agent is away`;
    this.timer = setTimeout(async () => {
      // Ended since the last read: one more read gets its last words.
      const ended = this.done();
      try {
        await this.readMore(gen);
        this.status();
      } catch (e) {
        if (gen !== this.gen) return;
        $('#log-status').innerHTML = `<span class="notice">stale: ${esc(e.message)}; retrying</span>`;
      }
      if (ended) { this.status(); this.render(); this.dot(false); this.tailing = false; return; }
      this.tail(gen);
    }, TAIL_EVERY);
  },
  async earlier() {
    if (this.start <= 0) return;
    const gen = this.gen;
    const from = Math.max(0, this.start - LOG_CHUNK);
    const got = await getJSON(this.filesUrl('read', { path: this.path(this.file), offset: from, length: this.start - from }));
    if (gen !== this.gen) return;
    const log = $('#log');
    const before = log.scrollHeight;
    log.prepend(document.createTextNode(got.data || ''));
    log.scrollTop += log.scrollHeight - before;
    this.start = from;
    this.status();
  },
  dot(on) { const d = $('#log-dot'); if (d) d.className = on ? 'dot live' : 'dot'; },
  status() {
    $('#log-earlier').disabled = this.start <= 0;
    const all = this.start <= 0 ? 'all of it' : `bytes ${num(this.start)}–${num(this.end)}`;
    $('#log-status').textContent = this.done()
      ? `${this.file}: complete, ${bytes(this.end)} (the task has ended); ${all} shown`
      : `${this.file}: ${bytes(this.end)} so far; ${all} shown`;
    this.render();
  },
};

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

const current = { view: null, route: null };

function pick(parts) {
  const [first, second, third] = parts;
  if (!first) return views.dashboard;
  if (first === 'agents') return second ? views.agent : views.agents;
  if (first === 'frameworks') return second ? views.framework : views.frameworks;
  if (first === 'tasks') return second && third ? views.task : views.tasks;
  if (first === 'roles') return views.roles;
  if (first === 'offers') return views.offers;
  return null;
}

function route() {
  const r = parseHash();
  const view = pick(r.parts);
  // Keep the frame (and the focused filter box) when only the params changed.
  const sameFrame = view && current.view === view && current.route &&
    current.route.parts.join('/') === r.parts.join('/');
  if (!sameFrame && current.view && current.view.unmount) current.view.unmount();
  live.generation += 1;
  clearTimeout(live.timer);
  const main = $('#view');
  document.querySelectorAll('#nav a').forEach(a => a.classList.toggle('active', view && a.dataset.nav === view.nav));
  if (!view) {
    current.view = null;
    main.innerHTML = '<div class="page-head"><h1>Not found</h1></div><p>No such page. <a href="#/">Go to the dashboard</a>.</p>';
    return;
  }
  current.view = view;
  current.route = r;
  if (!sameFrame) main.innerHTML = view.mount(r);
  if (view.bind) view.bind(r);
  document.title = `Agora · ${view.nav[0].toUpperCase()}${view.nav.slice(1)}`;
  live.delay = live.base;
  refresh(live.generation);
}

// A bug in this page must not fail silently: say so at the top.
function reportError(what) {
  banner('error', `The page hit an error: ${esc(what)}. Reloading may help; the data above may be stale.`);
}
window.addEventListener('error', ev => reportError(ev.message || 'unknown error'));
window.addEventListener('unhandledrejection', ev => reportError(String(ev.reason && ev.reason.message || ev.reason)));

window.addEventListener('hashchange', () => { if (!auth.waiting) route(); });
$('#login-form').addEventListener('submit', login);
$('#logout').addEventListener('click', logout);
$('#login-open').addEventListener('click', () => needLogin(null));
$('#login-cancel').addEventListener('click', closeLogin);
route();
