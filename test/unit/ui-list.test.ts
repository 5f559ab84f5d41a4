/**
 * What an operator of many builds sees, served by the real application (createApp with the UI
 * middleware) over real HTTP from an in-memory index: search, pages, the fleet summary (rendered
 * and streamed), and cards that tell builds apart (commit message and author, relative times).
 */
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BuildView } from '../../domain/build-view.js';
import { createApp } from '../../api/app.js';
import { matchesSearch, pageOf, parseSearch } from '../../api/build-search.js';
import { fleetSummary, SummaryFeed, type SummaryFigure } from '../../api/fleet-summary.js';
import { ago, CARDS_PER_ROW, ROWS_PER_PAGE, webUi } from '../../api/ui.js';
import { createLogger } from '../../lib/logger.js';
import { noLogs, serve, stubCommands, viewOf as view, type Served } from './app-fixture.js';

/** An index in memory that emits build events as the real one does. */
class MemoryIndex extends EventEmitter<{ upd: [BuildView]; del: [BuildView] }> {
  readonly builds = new Map<string, BuildView>();
  readonly isSynced = true;
  put(build: BuildView): void {
    this.builds.set(build.name, build);
    this.emit('upd', build);
  }
  get(name: string) {
    return this.builds.get(name);
  }
  list(filter: { repo?: string | undefined; pr?: number | undefined } = {}) {
    return [...this.builds.values()]
      .filter((b) => filter.repo === undefined || b.commit_info.repo === filter.repo)
      .filter((b) => filter.pr === undefined || b.commit_info.pr === filter.pr)
      .sort(
        (a, b) => (b.created ?? '').localeCompare(a.created ?? '') || a.name.localeCompare(b.name),
      );
  }
  all(filter = {}) {
    return this.list(filter);
  }
  find(name: string) {
    return Promise.resolve(this.builds.get(name));
  }
}

const index = new MemoryIndex();
const commands = stubCommands();
const limits = { maxStarted: 2, maxDeployed: 10, maxInitializing: 1 };

let served: Served;
let base: string;

beforeAll(async () => {
  const logger = createLogger('silent');
  // One feed for the API and the pages, as the API process wires it.
  const summary = new SummaryFeed(index as never, limits);
  const app = createApp({
    summary,
    index: index as never,
    commands,
    logs: noLogs,
    settings: { repos: () => [], ...limits, admin: {}, publicStartStop: true },
    temporalReady: () => Promise.resolve(true),
    logger,
    metrics: new Registry(),
    extra: [
      webUi({
        index: index as never,
        commands,
        repos: () => [{ repo: 'acme/.*', branch: '.*', sticky: false }],
        summary,
        publicStartStop: true,
        logger,
      }),
    ],
  });
  served = await serve(app);
  base = served.base;
});

afterAll(() => served.close());

const fix = view({
  sha: 'abc123',
  branch: 'feature/search',
  message: 'Fix the <b>invoice</b> total',
  author: 'Ann & Bob',
  created: '2024-05-03T10:00:00.000Z',
});
const pr42 = view({
  sha: 'def456',
  pr: 42,
  status: 'started',
  created: '2024-05-02T10:00:00.000Z',
});
const web = view({
  repo: 'acme/website',
  sha: 'aaa111',
  branch: '16.0',
  status: 'failed',
  created: '2024-05-01T10:00:00.000Z',
});

beforeEach(() => {
  // Through the index's events, as the real index changes: the summary follows them.
  for (const build of [...index.builds.values()]) {
    index.builds.delete(build.name);
    index.emit('del', build);
  }
  for (const build of [fix, pr42, web]) index.put(build);
});

async function get(path: string) {
  const response = await fetch(`${base}${path}`, { headers: { accept: 'text/html' } });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

async function getJson<T>(path: string) {
  const response = await fetch(`${base}${path}`);
  return { status: response.status, headers: response.headers, body: (await response.json()) as T };
}

/** The build names of the cards of a page, in page order. */
function cards(html: string): string[] {
  return [...html.matchAll(/<article class="card [^"]*" data-build="(\w+)"/g)].map((m) => m[1]!);
}

describe('search', () => {
  const search = (q: string) =>
    [fix, pr42, web].filter((b) => matchesSearch(b, parseSearch(q))).map((b) => b.name);

  it('finds builds by repo, branch, pull request, commit, name, message and author', () => {
    expect(search('website')).toEqual([web.name]);
    expect(search('feature/SEARCH')).toEqual([fix.name]);
    expect(search('#42')).toEqual([pr42.name]);
    expect(search('42')).toEqual([pr42.name]);
    expect(search('#4')).toEqual([]);
    expect(search('abc1')).toEqual([fix.name]);
    expect(search(fix.name.slice(0, 8))).toEqual([fix.name]);
    expect(search('invoice')).toEqual([fix.name]);
    expect(search('bob')).toEqual([fix.name]);
    // Every word must match.
    expect(search('acme/shop main')).toEqual([pr42.name]);
    expect(search('')).toEqual([fix.name, pr42.name, web.name]);
  });

  it('answers GET /api/v1/builds?q= with the matching builds', async () => {
    const found = await getJson<BuildView[]>(`/api/v1/builds?q=${encodeURIComponent('#42')}`);
    expect(found.status).toBe(200);
    expect(found.body.map((b) => b.name)).toEqual([pr42.name]);
    const withFilter = await getJson<BuildView[]>('/api/v1/builds?repo=acme/shop&q=abc1');
    expect(withFilter.body.map((b) => b.name)).toEqual([fix.name]);
    expect((await getJson(`/api/v1/builds?q=${'x'.repeat(201)}`)).status).toBe(400);
    expect((await getJson('/api/v1/builds?q=a&q=b')).status).toBe(400);
  });

  it('shows the results as cards on the home page, escaped', async () => {
    const page = await get(`/?q=${encodeURIComponent('invoice')}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('Builds matching “invoice”');
    expect(cards(page.text)).toEqual([fix.name]);
    expect(page.text).toContain('Fix the &lt;b&gt;invoice&lt;/b&gt; total');
    expect(page.text).toContain('Ann &amp; Bob');
    expect(page.text).not.toContain('<b>invoice</b>');
    const none = await get('/?q=%3Cscript%3E');
    expect(cards(none.text)).toEqual([]);
    expect(none.text).toContain('No build matches');
    expect(none.text).not.toContain('<script>');
  });

  it('puts a search box on every page, holding the search', async () => {
    for (const path of ['/', '/repos/acme/shop', `/builds/${fix.name}`, '/?q=shop']) {
      const page = await get(path);
      expect(page.text).toMatch(/<input id="search" type="search" name="q"/);
    }
    expect((await get('/?q=a%22b')).text).toContain('name="q" value="a&quot;b"');
  });
});

describe('pages', () => {
  it('cut a list into pages, the last one for a page past it', () => {
    const items = Array.from({ length: 25 }, (_, i) => i);
    expect(pageOf(items, 1, 10)).toMatchObject({ items: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], pages: 3 });
    expect(pageOf(items, 3, 10).items).toEqual([20, 21, 22, 23, 24]);
    expect(pageOf(items, 9, 10)).toMatchObject({ page: 3, total: 25 });
    expect(pageOf([], 1, 10)).toMatchObject({ items: [], page: 1, pages: 1 });
  });

  it('page GET /api/v1/builds with per_page and page, and say how many there are', async () => {
    const first = await getJson<BuildView[]>('/api/v1/builds?per_page=2');
    expect(first.body.map((b) => b.name)).toEqual([fix.name, pr42.name]);
    expect(first.headers.get('x-total-count')).toBe('3');
    expect(first.headers.get('link')).toBe(
      '</api/v1/builds?per_page=2&page=2>; rel="next", </api/v1/builds?per_page=2&page=2>; rel="last"',
    );
    const second = await getJson<BuildView[]>('/api/v1/builds?per_page=2&page=2');
    expect(second.body.map((b) => b.name)).toEqual([web.name]);
    expect(second.headers.get('link')).toContain('page=1>; rel="prev"');
    // Without per_page: every build, as before.
    expect((await getJson<BuildView[]>('/api/v1/builds')).body).toHaveLength(3);
    for (const bad of ['per_page=0', 'per_page=1001', 'page=-1', 'per_page=x']) {
      expect((await getJson(`/api/v1/builds?${bad}`)).status).toBe(400);
    }
  });

  it('show the newest cards of each row of a repo page, and the rest of a row on its own page', async () => {
    index.builds.clear();
    const mains = Array.from({ length: 100 }, (_, i) =>
      view({
        sha: `e${String(i).padStart(3, '0')}`,
        created: new Date(Date.UTC(2024, 4, 1, 0, i)).toISOString(),
      }),
    );
    for (const build of mains) index.builds.set(build.name, build);
    const newest = mains.map((b) => b.name).reverse();

    const page = await get('/repos/acme/shop');
    expect(cards(page.text)).toEqual(newest.slice(0, CARDS_PER_ROW));
    expect(page.text).toContain(`data-cap="${CARDS_PER_ROW}"`);
    expect(page.text).toContain(
      `<a class="more" href="/repos/acme/shop?branch=main" data-count="${100 - CARDS_PER_ROW}">${100 - CARDS_PER_ROW} older builds of this branch →</a>`,
    );

    const row = await get('/repos/acme/shop?branch=main');
    expect(cards(row.text)).toEqual(newest.slice(0, 60));
    expect(row.text).toContain('page 1 of 2');
    expect(row.text).toContain('data-fixed');
    const rest = await get('/repos/acme/shop?branch=main&page=2');
    expect(cards(rest.text)).toEqual(newest.slice(60));
  });

  it('put the rows of a repo page on pages', async () => {
    index.builds.clear();
    const prs = Array.from({ length: ROWS_PER_PAGE + 5 }, (_, i) =>
      view({ sha: `f${String(i).padStart(3, '0')}`, pr: i + 1 }),
    );
    for (const build of prs) index.builds.set(build.name, build);
    const first = await get('/repos/acme/shop');
    expect(first.text).toContain('page 1 of 2');
    // Newest pull requests first.
    expect(cards(first.text)[0]).toBe(prs[ROWS_PER_PAGE + 4]!.name);
    expect(cards(first.text)).toHaveLength(ROWS_PER_PAGE);
    expect(first.text).toContain('<a rel="next" href="/repos/acme/shop?page=2">');
    const second = await get('/repos/acme/shop?page=2');
    expect(cards(second.text)).toEqual(
      prs
        .slice(0, 5)
        .map((b) => b.name)
        .reverse(),
    );
    expect(second.text).toContain('data-fixed');
  });
});

describe('the fleet summary', () => {
  const figure = (figures: SummaryFigure[], key: string) => figures.find((f) => f.key === key);

  it('counts builds against their limits', () => {
    const figures = fleetSummary(
      [
        view({ sha: '1', status: 'started' }),
        view({ sha: '2', status: 'starting' }),
        view({ sha: '3', status: 'initializing' }),
        view({ sha: '4', status: 'queued' }),
        view({ sha: '5', status: 'todo' }),
        view({ sha: '6', status: 'failed' }),
        view({ sha: '7', status: 'cleanup-failed' }),
      ],
      limits,
    );
    expect(figures.map((f) => f.key)).toEqual([
      'started',
      'deployed',
      'initializing',
      'queued',
      'failed',
      'cleanup-failed',
    ]);
    expect(figure(figures, 'started')).toMatchObject({ value: 2, limit: 2, level: 'full' });
    expect(figure(figures, 'deployed')).toMatchObject({ value: 6, limit: 10, level: 'ok' });
    expect(figure(figures, 'initializing')).toMatchObject({ value: 1, limit: 1, level: 'full' });
    expect(figure(figures, 'queued')).toMatchObject({ value: 2, limit: null });
    expect(figure(figures, 'failed')).toMatchObject({ value: 1, level: 'warn' });
    expect(figure(figures, 'cleanup-failed')).toMatchObject({ value: 1, level: 'bad' });
  });

  it('is on every page and in GET /api/v1/status', async () => {
    for (const path of ['/', '/repos/acme/shop', `/builds/${fix.name}`, '/nowhere']) {
      const page = await get(path);
      expect(page.text).toMatch(
        /<div class="figure level-ok" data-key="started" title="[^"]+"><dt>started<\/dt><dd><b class="value">1<\/b><span class="limit">\/2<\/span><\/dd><\/div>/,
      );
      expect(page.text).toContain('data-key="cleanup-failed"');
    }
    const status = await getJson<{ summary: SummaryFigure[]; limits: object }>('/api/v1/status');
    expect(status.body.limits).toEqual({ max_started: 2, max_deployed: 10, max_initializing: 1 });
    expect(figure(status.body.summary, 'deployed')).toMatchObject({ value: 3, limit: 10 });
    expect(figure(status.body.summary, 'failed')).toMatchObject({ value: 1, level: 'warn' });
  });

  it('is streamed with the build events, and again when a build changes', async () => {
    const controller = new AbortController();
    const response = await fetch(`${base}/api/v1/build-events`, { signal: controller.signal });
    const reader = response.body!.getReader();
    let text = '';
    const summaries = () =>
      [...text.matchAll(/event: summary\ndata: (.*)\n\n/g)].map(
        (m) => JSON.parse(m[1]!) as SummaryFigure[],
      );
    const until = async (count: number) => {
      while (summaries().length < count) {
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        text += new TextDecoder().decode(value);
      }
    };
    await until(1);
    expect(figure(summaries()[0]!, 'started')).toMatchObject({ value: 1 });
    index.put({ ...fix, status: 'started' });
    await until(2);
    expect(figure(summaries()[1]!, 'started')).toMatchObject({ value: 2, level: 'full' });
    controller.abort();
  });
});

describe('cards', () => {
  it('show the commit message and author, and when the build was created', async () => {
    const created = new Date(Date.now() - 3 * 60_000 - 5_000).toISOString();
    index.put({ ...fix, created });
    const page = await get('/repos/acme/shop');
    expect(page.text).toContain(
      `<span class="message" title="Fix the &lt;b&gt;invoice&lt;/b&gt; total">Fix the &lt;b&gt;invoice&lt;/b&gt; total</span>`,
    );
    expect(page.text).toContain('<span class="author">Ann &amp; Bob</span>');
    expect(page.text).toContain(
      `<time class="ago" datetime="${created}" title="${created}">3 min ago</time>`,
    );
    // No message, no empty line for it.
    const other = page.text.slice(page.text.indexOf(`data-build="${pr42.name}"`));
    expect(other.slice(0, other.indexOf('</article>'))).not.toContain('class="commit"');
  });

  it('show the commit message and author on the build page too, escaped', async () => {
    const page = await get(`/builds/${fix.name}`);
    expect(page.text).toContain(
      '<dt>message</dt><dd class="commit-message">Fix the &lt;b&gt;invoice&lt;/b&gt; total</dd>',
    );
    expect(page.text).toContain('<dt>author</dt><dd class="commit-author">Ann &amp; Bob</dd>');
    expect((await get(`/builds/${pr42.name}`)).text).not.toContain('<dt>message</dt>');
  });

  it('say how long ago, in words', () => {
    const now = Date.parse('2024-05-10T12:00:00Z');
    expect(ago('2024-05-10T11:59:30Z', now)).toBe('just now');
    expect(ago('2024-05-10T11:57:00Z', now)).toBe('3 min ago');
    expect(ago('2024-05-10T09:00:00Z', now)).toBe('3 h ago');
    expect(ago('2024-05-09T11:00:00Z', now)).toBe('1 day ago');
    expect(ago('2024-05-01T12:00:00Z', now)).toBe('9 days ago');
    expect(ago('2023-01-01T12:00:00Z', now)).toBe('2023-01-01');
    expect(ago(null, now)).toBe('never');
  });
});
