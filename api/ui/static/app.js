/*
 * Keeps the runboat pages live: build events (server-sent, `upd`/`del`) update the cards, the home
 * page counts and the build page, and the start/stop/reset buttons post to the REST API. Plain
 * JavaScript with no build step. card(), row() and repoEntry() build the very markup of
 * api/ui/templates/macros.njk from the same fields: change both together. The banner (no worker
 * on a task queue) follows the warnings of /api/v1/status, read again every few seconds.
 */
/* global document, location, EventSource, fetch, setTimeout, setInterval, clearTimeout, CSS, CustomEvent */

const ACTIONS = ['start', 'stop', 'reset'];
/** After a (re)connect the server replays every build; what it did not replay is gone. */
const RESYNC_MS = 1500;
/** How often the banner asks whether workers poll (the server caches the answer as long). */
const BANNER_MS = 5000;
/** How often the relative times of the cards ("3 min ago") are computed again. */
const AGO_MS = 30000;

const body = document.body;
/** Every build status in lifecycle order: the server's table (domain/build.ts), via the page. */
const STATUSES = (body.dataset.statuses || '').split(',').filter(Boolean);
const page = body.dataset.page;
/** The session's CSRF token (layout.njk), sent with every action: proof that it comes from here. */
const CSRF = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') || '';
/**
 * When the server rendered the page, less a margin for clocks (creation times are whole seconds):
 * a build the stream replays that was created before, with no card here, was left out on purpose
 * (another page, or older than the newest cards of its row).
 */
const RENDERED = body.dataset.rendered
  ? new Date(Date.parse(body.dataset.rendered) - 2000).toISOString()
  : '';
/** Between a (re)connect and the summary event that ends the replay of every build. */
let replaying = false;
/** Every build the stream told of, by name. */
const builds = new Map();
/** Cards waiting for an answer to a button: name → action. */
const pending = new Map();
/** The last error of a button, shown on its card until the next press: name → text. */
const errors = new Map();
/** Builds replayed since the last (re)connect. */
let seen = new Set();
/** The builds of each row of a repo page the stream told of: row element → names. */
const rowBuilds = new Map();

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

/** A repo in a link of this site, each part percent-encoded (the `urlpath` filter of ui.ts). */
function urlPath(name) {
  const parts = name.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return encodeURIComponent(name);
  return parts.map(encodeURIComponent).join('/');
}

function when(iso) {
  return iso ? iso.slice(0, 16).replace('T', ' ') + ' UTC' : 'never';
}

/** How long ago an instant was: the `ago` of api/ui.ts, for the cards this script builds. */
function ago(iso, now = Date.now()) {
  if (!iso) return 'never';
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  const minutes = Math.floor((now - time) / 60000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return minutes + ' min ago';
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return hours + ' h ago';
  const days = Math.floor(hours / 24);
  if (days < 60) return days === 1 ? '1 day ago' : days + ' days ago';
  return iso.slice(0, 10);
}

function refreshTimes() {
  const now = Date.now();
  for (const el of document.querySelectorAll('time.ago')) {
    const text = ago(el.getAttribute('datetime'), now);
    if (el.textContent !== text) el.textContent = text;
  }
}

function can(action, status) {
  if (status === 'queued') return false;
  if (action === 'start') return status === 'stopped';
  if (action === 'stop') return status === 'started' || status === 'starting';
  return status !== 'undeploying' && status !== 'cleanup-failed';
}

function liveHref(b) {
  return b.status === 'stopped' ? '/builds/' + b.name + '?live' : b.deploy_link;
}

function card(b) {
  const c = b.commit_info;
  const el = h(
    'article',
    {
      class: 'card status-' + b.status,
      'data-build': b.name,
      'data-status': b.status,
      'data-created': b.created || '',
    },
    h(
      'div',
      { class: 'card-head' },
      h('span', { class: 'status' }, b.status),
      h(
        'a',
        { class: 'sha', href: b.repo_commit_link, title: c.git_commit },
        c.git_commit.slice(0, 7),
      ),
      c.pr ? h('a', { class: 'pr', href: b.repo_pr_link }, '#' + c.pr) : null,
    ),
    c.message || c.author
      ? h(
          'p',
          { class: 'commit' },
          c.message ? h('span', { class: 'message', title: c.message }, c.message) : null,
          c.author ? h('span', { class: 'author' }, c.author) : null,
        )
      : null,
    h(
      'div',
      { class: 'card-meta' },
      h('a', { class: 'name', href: '/builds/' + b.name }, b.name),
      h(
        'time',
        { class: 'ago', datetime: b.created || '', title: b.created || '' },
        ago(b.created),
      ),
    ),
    h(
      'div',
      { class: 'links' },
      h('a', { href: liveHref(b) }, 'live'),
      h('a', { href: '/api/v1/builds/' + b.name + '/log' }, 'log'),
      b.image_status
        ? h('a', { href: '/api/v1/builds/' + b.name + '/build-log' }, 'build log')
        : null,
      h('a', { href: '/api/v1/builds/' + b.name + '/init-log' }, 'init log'),
      b.status === 'cleanup-failed'
        ? h('a', { href: '/api/v1/builds/' + b.name + '/cleanup-log' }, 'cleanup log')
        : null,
    ),
    h(
      'div',
      { class: 'actions' },
      ACTIONS.map((a) =>
        h('button', { type: 'button', 'data-action': a, disabled: !can(a, b.status) }, a),
      ),
    ),
    b.failure_reason ? h('p', { class: 'reason' }, b.failure_reason) : null,
    h('p', { class: 'error', role: 'alert', hidden: true }),
  );
  decorate(el, b.name);
  return el;
}

/** The transient state of a card: a button waiting for its answer, or the error it got. */
function decorate(el, name) {
  const action = pending.get(name);
  if (action) {
    el.classList.add('pending');
    for (const button of el.querySelectorAll('button')) {
      button.disabled = true;
      if (button.dataset.action === action) button.textContent = action + '…';
    }
  }
  const error = errors.get(name);
  const slot = el.querySelector('.error');
  if (error && slot) {
    slot.textContent = error;
    slot.hidden = false;
  }
}

function row(b) {
  const c = b.commit_info;
  const title = c.pr
    ? [
        h('span', { class: 'kind' }, 'PR'),
        h('a', { href: b.repo_pr_link }, '#' + c.pr),
        h('span', { class: 'target' }, 'into'),
        h(
          'a',
          { class: 'branch', href: b.repo_target_branch_link, title: c.target_branch },
          c.target_branch,
        ),
      ]
    : [
        h('span', { class: 'kind' }, 'branch'),
        h(
          'a',
          { class: 'branch', href: b.repo_target_branch_link, title: c.target_branch },
          c.target_branch,
        ),
      ];
  return h(
    'section',
    {
      class: 'row',
      'data-kind': c.pr ? 'pr' : 'branch',
      'data-key': c.pr ? c.pr : c.target_branch,
    },
    h('h3', { class: 'row-title' }, title),
    h('div', { class: 'cards' }),
  );
}

function repoEntry(repo, counts, total) {
  return h(
    'li',
    { class: 'repo', 'data-repo': repo },
    h('a', { class: 'repo-name', href: '/repos/' + urlPath(repo) }, repo),
    h(
      'span',
      { class: 'counts' },
      STATUSES.filter((s) => counts[s]).map((s) =>
        h('span', { class: 'count status-' + s }, s, h('b', {}, String(counts[s]))),
      ),
    ),
    h('span', { class: 'total' }, total + (total === 1 ? ' build' : ' builds')),
  );
}

function findCard(name) {
  return document.querySelector('.card[data-build="' + CSS.escape(name) + '"]');
}

/** Newest first, as the server lists them. */
function before(a, b) {
  return a.created !== b.created ? a.created > b.created : a.name < b.name;
}

/** A build's card, changed in place; a card for it, when the page shows it and it is new here. */
function placeCard(b, isNew) {
  const old = findCard(b.name);
  const fresh = card(b);
  if (old) {
    const rowEl = old.closest('.row');
    if (rowEl) track(rowEl, b.name);
    return old.replaceWith(fresh);
  }
  if (page !== 'repo' || body.dataset.repo !== b.commit_info.repo) return;
  const pr = b.commit_info.pr;
  const rows = document.getElementById(pr ? 'pr-rows' : 'branch-rows');
  const key = pr ? String(pr) : b.commit_info.target_branch;
  let target = [...rows.children].find((r) => r.dataset.key === key);
  if (target) track(target, b.name);
  // A build heard of before and without a card was left out (another page, or older than its
  // row's newest cards); so was one of the first replay created before the page was rendered.
  if (!isNew || (replaying && (b.created || '') < RENDERED)) return;
  if (!target) {
    // A later page of rows, or the page of one row: its rows stay those it shows.
    if (rows.hasAttribute('data-fixed')) return;
    target = row(b);
    if (rows.dataset.cap) target.querySelector('.cards').dataset.cap = rows.dataset.cap;
    const next = [...rows.children].find((r) =>
      pr ? Number(r.dataset.key) < pr : r.dataset.key > key,
    );
    rows.insertBefore(target, next || null);
    track(target, b.name);
  }
  const list = target.querySelector('.cards');
  const mine = { created: b.created || '', name: b.name };
  const next = [...list.children].find((el) =>
    before(mine, { created: el.dataset.created, name: el.dataset.build }),
  );
  list.insertBefore(fresh, next || null);
  // A row shows its newest cards only (api/ui.ts, CARDS_PER_ROW).
  const cap = Number(list.dataset.cap || 0);
  while (cap && list.children.length > cap) list.lastElementChild.remove();
  if (!replaying) countOlder(target);
}

function track(rowEl, name) {
  if (!rowBuilds.has(rowEl)) rowBuilds.set(rowEl, new Set());
  rowBuilds.get(rowEl).add(name);
}

/**
 * The link of a row to its own page, with the number of its builds the page leaves out (the
 * row's builds the stream told of, less its cards): the markup of macros.njk, row.
 */
function countOlder(rowEl) {
  const list = rowEl.querySelector('.cards');
  const names = rowBuilds.get(rowEl);
  if (!list.dataset.cap || !names || !rowEl.isConnected) return;
  const link = rowEl.querySelector(':scope > .more');
  const count = names.size - list.children.length;
  if (link && Number(link.dataset.count) === count) return;
  if (count <= 0) return link?.remove();
  const pr = rowEl.dataset.kind === 'pr';
  const key = rowEl.dataset.key;
  const more = h(
    'a',
    {
      class: 'more',
      href:
        '/repos/' +
        urlPath(body.dataset.repo) +
        (pr ? '?pr=' + key : '?branch=' + encodeURIComponent(key)),
      'data-count': count,
    },
    count +
      ' older ' +
      (count === 1 ? 'build' : 'builds') +
      ' of ' +
      (pr ? 'this pull request' : 'this branch') +
      ' →',
  );
  if (link) link.replaceWith(more);
  else rowEl.append(more);
}

/** The fleet summary of layout.njk: the server's figures, put into the server's markup. */
function renderSummary(figures) {
  for (const f of figures) {
    const el = document.querySelector('#summary .figure[data-key="' + CSS.escape(f.key) + '"]');
    if (!el) continue;
    el.className = 'figure level-' + f.level;
    el.querySelector('.value').textContent = String(f.value);
    const limit = el.querySelector('.limit');
    if (limit && f.limit !== null) limit.textContent = '/' + f.limit;
  }
}

function removeCard(name) {
  const el = findCard(name);
  if (!el) return;
  const rowEl = el.closest('.row');
  el.remove();
  if (rowEl && !rowEl.querySelector('.card')) rowEl.remove();
}

let homeTimer;
/** Home counts are recomputed from every build; batched, since a replay is a burst of events. */
function renderHome() {
  clearTimeout(homeTimer);
  homeTimer = setTimeout(() => {
    const list = document.getElementById('repos');
    const byRepo = new Map();
    for (const b of builds.values()) {
      const entry = byRepo.get(b.commit_info.repo) || { counts: {}, total: 0 };
      entry.counts[b.status] = (entry.counts[b.status] || 0) + 1;
      entry.total++;
      byRepo.set(b.commit_info.repo, entry);
    }
    const repos = [...byRepo.keys()].sort();
    list.replaceChildren(
      ...repos.map((r) => repoEntry(r, byRepo.get(r).counts, byRepo.get(r).total)),
    );
    applyFilter();
  }, 150);
}

function applyFilter() {
  const input = document.getElementById('filter');
  if (!input) return;
  const q = input.value.trim().toLowerCase();
  for (const li of document.querySelectorAll('#repos .repo'))
    li.hidden = !li.dataset.repo.includes(q);
}

function renderBuildPage(b) {
  // For build-page.js (its timeline and init log).
  document.dispatchEvent(new CustomEvent('runboat:build', { detail: b }));
  for (const dd of document.querySelectorAll('[data-field]')) {
    const field = dd.dataset.field;
    const value = b[field];
    dd.textContent = field === 'created' || field === 'last_scaled' ? when(value) : value || 'none';
  }
}

function renderHolding(b) {
  if (b.status === 'started') {
    location.href = b.deploy_link;
    return;
  }
  const status = document.getElementById('holding-status');
  status.textContent = b.status;
  status.className = 'status-text status-' + b.status;
  const note = document.getElementById('holding-note');
  const stuck = !['stopped', 'starting'].includes(b.status);
  note.hidden = !stuck;
  if (stuck)
    note.textContent = 'The build is ' + b.status + ': it will not become ready by itself.';
}

function onUpd(b) {
  const isNew = !builds.has(b.name);
  builds.set(b.name, b);
  seen.add(b.name);
  if (page === 'home') {
    // A card of the search results changes in place; new matches come with a new search.
    const old = findCard(b.name);
    if (old) old.replaceWith(card(b));
    return renderHome();
  }
  if (page === 'holding' && body.dataset.build === b.name) return renderHolding(b);
  placeCard(b, isNew);
  if (page === 'build' && body.dataset.build === b.name) renderBuildPage(b);
}

function onDel(b) {
  builds.delete(b.name);
  if (page === 'home') return renderHome();
  removeCard(b.name);
  for (const [rowEl, names] of rowBuilds) {
    if (names.delete(b.name) && !replaying) countOlder(rowEl);
  }
  if (body.dataset.build !== b.name) return;
  document.dispatchEvent(new CustomEvent('runboat:gone', { detail: b }));
  const note = document.getElementById(page === 'holding' ? 'holding-note' : 'gone');
  if (note) {
    note.textContent = 'This build has been undeployed.';
    note.hidden = false;
  }
}

let resyncTimer;
const conn = document.getElementById('conn');

function connected(live) {
  conn.hidden = false;
  conn.textContent = live ? 'live' : 'reconnecting…';
  conn.className = 'conn ' + (live ? 'up' : 'down');
}

function connect() {
  const events = new EventSource('/api/v1/build-events');
  events.addEventListener('open', () => {
    connected(true);
    replaying = true;
    seen = new Set();
    clearTimeout(resyncTimer);
    resyncTimer = setTimeout(() => {
      // Builds undeployed while the page was not listening.
      for (const b of [...builds.values()]) if (!seen.has(b.name)) onDel(b);
      for (const el of document.querySelectorAll('.card[data-build]')) {
        if (!seen.has(el.dataset.build)) onDel({ name: el.dataset.build });
      }
      if (page === 'home') renderHome();
    }, RESYNC_MS);
  });
  events.addEventListener('upd', (e) => onUpd(JSON.parse(e.data)));
  events.addEventListener('del', (e) => onDel(JSON.parse(e.data)));
  events.addEventListener('summary', (e) => {
    // The replay is over: every row's builds are known.
    if (replaying) for (const rowEl of rowBuilds.keys()) countOlder(rowEl);
    replaying = false;
    renderSummary(JSON.parse(e.data));
  });
  events.addEventListener('error', () => {
    connected(false);
    clearTimeout(resyncTimer);
    // EventSource retries by itself, except after an answer that is not an event stream.
    if (events.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  });
}

async function press(button) {
  const el = button.closest('.card');
  const name = el.dataset.build;
  const action = button.dataset.action;
  pending.set(name, action);
  errors.delete(name);
  const slot = el.querySelector('.error');
  slot.hidden = true;
  decorate(el, name);
  let answer;
  try {
    const response = await fetch('/api/v1/builds/' + encodeURIComponent(name) + '/' + action, {
      method: 'POST',
      headers: { accept: 'application/json', ...(CSRF ? { 'x-csrf-token': CSRF } : {}) },
    });
    answer = await response.json().catch(() => ({}));
    if (response.status === 401) errors.set(name, 'login required: log in (top right) first');
    else if (!response.ok)
      errors.set(name, answer.error || response.status + ' ' + response.statusText);
  } catch {
    errors.set(name, 'network error: try again');
  } finally {
    pending.delete(name);
  }
  // The stream is the freshest source; the answer only when the stream has not told of it.
  const latest = builds.get(name) || (answer && answer.name === name ? answer : undefined);
  const current = findCard(name);
  if (!current) return;
  if (latest) return current.replaceWith(card(latest));
  current.classList.remove('pending');
  for (const b of current.querySelectorAll('button')) {
    b.textContent = b.dataset.action;
    b.disabled = !can(b.dataset.action, current.dataset.status);
  }
  decorate(current, name);
}

document.addEventListener('click', (e) => {
  const button = e.target.closest('.card button[data-action]');
  if (button && !button.disabled) press(button);
});
/** The banner of layout.njk, from the warnings of the status (same markup: one <p> each). */
async function refreshBanner() {
  const banner = document.getElementById('banner');
  try {
    const response = await fetch('/api/v1/status', { headers: { accept: 'application/json' } });
    if (!response.ok) return;
    const status = await response.json();
    const warnings = (status.workers && status.workers.warnings) || [];
    const shown = [...banner.querySelectorAll('p')].map((p) => p.textContent);
    if (shown.join('\n') !== warnings.join('\n')) {
      banner.replaceChildren(...warnings.map((w) => h('p', {}, w)));
    }
    banner.hidden = warnings.length === 0;
  } catch {
    // Offline: the connection indicator already says so; keep the last banner.
  }
}

document.getElementById('filter')?.addEventListener('input', applyFilter);
applyFilter();
// The build page's timeline and init log: a module of their own, loaded on that page only.
if (page === 'build') import('./build-page.js');
connect();
setInterval(refreshBanner, BANNER_MS);
refreshTimes();
setInterval(refreshTimes, AGO_MS);
