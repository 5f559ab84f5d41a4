/*
 * The build page's timeline and init log (docs/operations.md, "The build page"). The timeline is
 * read from /api/v1/builds/<name>/timeline, again whenever the build changes. The init log is
 * the kept one (`init-log`) once the init has ended, and while it runs its pod's log followed
 * live (`init-log?follow=true`), until the build leaves `initializing`. Log text is shown with
 * its ANSI colours (ansi.js) as spans filled through textContent: no log text is ever markup.
 * The failure reason sits right after the line of the log that said it (`runboat: error: …`),
 * or after the last line when no line said it. app.js loads this module on the build page and
 * tells it of the build's changes (events `runboat:build`, `runboat:gone`).
 */
/* global document, fetch, setTimeout, clearTimeout, AbortController, TextDecoder */
import { ansiLines, lineText, plainStyle } from './ansi.js';

/** Lines kept on the page at most: the oldest go first. */
const MAX_LINES = 5000;
/** How long the page waits before asking again for a log that is not there yet. */
const RETRY_MS = 2000;
/** Timeline reads coalesce within this; and it is read again this often anyway. */
const TIMELINE_DEBOUNCE_MS = 400;
const TIMELINE_REFRESH_MS = 15_000;
/** The prefix of the line with which an init script says why it failed (kubefiles/README.md). */
const SCRIPT_ERROR = 'runboat: error: ';

const name = document.body.dataset.build;
const api = '/api/v1/builds/' + encodeURIComponent(name);
const logBox = document.getElementById('init-log');
const logState = document.getElementById('init-log-state');
const timelineBox = document.getElementById('timeline');
const timelineState = document.getElementById('timeline-state');

const field = (key) => document.querySelector(`[data-field="${key}"]`)?.textContent ?? '';
/** What the page knows of the build: its status and failure reason. */
let build = { status: field('status'), failure_reason: field('failure_reason') };
if (build.failure_reason === 'none') build.failure_reason = '';

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** `2026-05-01T10:20:30.123Z` → `2026-05-01 10:20:30` (UTC, as the page says). */
function stamp(iso) {
  return iso.slice(0, 19).replace('T', ' ');
}

// ---------------------------------------------------------------- timeline

let timelineTimer;
let timelineBusy = false;
let timelineAgain = false;

async function loadTimeline() {
  if (timelineBusy) {
    timelineAgain = true;
    return;
  }
  timelineBusy = true;
  try {
    const response = await fetch(api + '/timeline', { headers: { accept: 'application/json' } });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      timelineState.textContent =
        'The history cannot be read now: ' + (answer.error || response.status);
      timelineState.hidden = false;
      return;
    }
    renderTimeline(answer);
  } catch {
    timelineState.textContent = 'The history cannot be read now: network error.';
    timelineState.hidden = false;
  } finally {
    timelineBusy = false;
    if (timelineAgain) {
      timelineAgain = false;
      scheduleTimeline();
    }
  }
}

function renderTimeline(timeline) {
  const items = timeline.entries.map((entry) => {
    const li = el('li', 'tl tl-' + entry.kind);
    li.dataset.kind = entry.kind;
    const time = el('time', '', stamp(entry.time));
    time.dateTime = entry.time;
    time.title = entry.time;
    li.append(time, el('span', 'tl-title', entry.title));
    if (entry.detail) li.append(el('span', 'tl-detail', entry.detail));
    return li;
  });
  timelineBox.replaceChildren(...items);
  timelineState.hidden = !timeline.truncated && items.length > 0;
  timelineState.textContent = timeline.truncated
    ? 'Older history is left out' +
      (timeline.workflow.link ? ': the Temporal UI shows all of it.' : '.')
    : 'Nothing in the history yet.';
}

function scheduleTimeline() {
  clearTimeout(timelineTimer);
  timelineTimer = setTimeout(loadTimeline, TIMELINE_DEBOUNCE_MS);
}

// ---------------------------------------------------------------- init log

/** Which log is shown: 'none', 'live' (followed) or 'kept'. */
let shown = 'none';
let follow;
let retryTimer;
let style = plainStyle();
let partial = '';

function nearBottom() {
  return logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 40;
}

function lineElement(segments) {
  const line = el('div', 'log-line');
  for (const segment of segments) {
    line.append(segment.classes ? el('span', segment.classes, segment.text) : segment.text);
  }
  if (lineText(segments).startsWith(SCRIPT_ERROR)) line.classList.add('log-cause');
  return line;
}

/** Appends whole lines of log text (each ending with a newline, or the last of a log). */
function appendText(text) {
  const stick = nearBottom();
  const lines = ansiLines(text, style).map(lineElement);
  logBox.append(...lines);
  let extra = logBox.childElementCount - MAX_LINES;
  while (extra-- > 0) logBox.firstElementChild.remove();
  if (stick) logBox.scrollTop = logBox.scrollHeight;
}

function clearLog() {
  logBox.replaceChildren();
  style = plainStyle();
  partial = '';
}

/** The failure reason, next to the line that said it, or after the last line. */
function placeReason() {
  logBox.querySelector('.log-reason')?.remove();
  if (build.status !== 'failed' || !build.failure_reason || shown !== 'kept') return;
  const reason = el('div', 'log-reason');
  reason.setAttribute('role', 'note');
  reason.append(el('strong', '', 'failed: '), build.failure_reason);
  const causes = logBox.querySelectorAll('.log-cause');
  const after = causes.length ? causes[causes.length - 1] : logBox.lastElementChild;
  if (after) after.after(reason);
  else logBox.append(reason);
  if (causes.length) reason.classList.add('at-cause');
}

function setLogState(text) {
  logState.textContent = text;
  logState.hidden = !text;
}

function stopFollowing() {
  clearTimeout(retryTimer);
  if (follow) follow.abort();
  follow = undefined;
}

/** Shows the kept init log (after the init), or says why there is none. */
async function showKept(attempt = 0) {
  stopFollowing();
  let response;
  try {
    response = await fetch(api + '/init-log', { headers: { accept: 'text/plain' } });
  } catch {
    setLogState('The init log cannot be read now: network error.');
    return;
  }
  const text = await response.text();
  if (response.status === 409) {
    // The init has not ended, or its log is being kept right now.
    setLogState(waitingText());
    if (attempt < 5 && !['todo', 'building', 'queued'].includes(build.status)) {
      retryTimer = setTimeout(() => showKept(attempt + 1), RETRY_MS);
    }
    return;
  }
  if (!response.ok) {
    setLogState('The init log cannot be read now: ' + errorOf(text, response));
    return;
  }
  clearLog();
  shown = 'kept';
  appendText(text);
  logBox.scrollTop = logBox.scrollHeight;
  setLogState('');
  placeReason();
}

function errorOf(text, response) {
  try {
    return JSON.parse(text).error || String(response.status);
  } catch {
    return String(response.status);
  }
}

function waitingText() {
  if (build.status === 'queued' || build.status === 'todo') {
    return 'The init has not started yet: the build waits for an init slot.';
  }
  if (build.status === 'building') return 'The image is being built: the init comes next.';
  return 'No init log yet.';
}

/** Follows the running init's log until the build leaves `initializing`. */
async function followLive() {
  stopFollowing();
  const controller = new AbortController();
  follow = controller;
  let response;
  try {
    response = await fetch(api + '/init-log?follow=true', {
      headers: { accept: 'text/plain' },
      signal: controller.signal,
    });
  } catch {
    if (follow === controller) retryLater();
    return;
  }
  if (follow !== controller) return;
  if (response.headers.get('x-runboat-log') !== 'live') {
    // The init ended meanwhile (the kept log), or its pod is not running yet (503).
    await response.body?.cancel();
    if (response.ok || build.status !== 'initializing') return showKept();
    setLogState('The init is starting: waiting for its pod…');
    return retryLater();
  }
  clearLog();
  shown = 'live';
  setLogState('The init is running: its log follows live.');
  logBox.classList.add('live');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const text = partial + decoder.decode(value, { stream: true });
      const end = text.lastIndexOf('\n');
      partial = end < 0 ? text : text.slice(end + 1);
      if (end >= 0) appendText(text.slice(0, end + 1));
    }
  } catch {
    // Aborted (the init ended) or cut off: what comes next is decided below.
  } finally {
    logBox.classList.remove('live');
  }
  if (follow !== controller) return;
  if (partial) appendText(partial);
  partial = '';
  follow = undefined;
  // The pod's log ended: the init is over (the kept log follows with the status), or the pod
  // was replaced (a retry of the Job): follow again.
  if (build.status === 'initializing') retryLater();
  else showKept();
}

function retryLater() {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => {
    if (build.status === 'initializing') followLive();
    else showKept();
  }, RETRY_MS);
}

/** The log to show for the build's status. */
function showLog() {
  if (build.status === 'initializing') {
    if (!follow) followLive();
    return;
  }
  if (follow) {
    // The init ended: its kept log replaces the live one.
    stopFollowing();
    return showKept();
  }
  if (shown === 'kept') return placeReason();
  showKept();
}

// ---------------------------------------------------------------- wiring

document.addEventListener('runboat:build', (event) => {
  const b = event.detail;
  const before = build;
  build = { status: b.status, failure_reason: b.failure_reason || '' };
  if (before.status !== build.status || before.failure_reason !== build.failure_reason) {
    // A reset: the new init's log replaces the old one.
    if (before.status !== 'initializing' && build.status === 'initializing') shown = 'none';
    showLog();
    scheduleTimeline();
  }
});

document.addEventListener('runboat:gone', () => {
  build = { ...build, status: 'undeployed' };
  stopFollowing();
  scheduleTimeline();
});

loadTimeline();
showLog();
// Signals that change no status (drift seen) still show within a while.
(function refresh() {
  setTimeout(() => {
    loadTimeline();
    refresh();
  }, TIMELINE_REFRESH_MS);
})();
