/**
 * The web UI served by the real application (createApp with the UI middleware) over real HTTP,
 * reading builds from an in-memory index and recording the commands it sends.
 */
import { request } from 'node:http';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildStatuses } from '../../domain/build.js';
import type { BuildView } from '../../domain/build-view.js';
import { createApp } from '../../api/app.js';
import type { BuildFilter } from '../../api/build-index.js';
import type { Transition } from '../../api/commands.js';
import { webUi } from '../../api/ui.js';
import { noWorkerWarning, type WorkerStatus } from '../../api/worker-status.js';
import { ClientError, InvalidTransitionError } from '../../lib/errors.js';
import { createLogger } from '../../lib/logger.js';
import { noLogs, serve, stubCommands, viewOf as view, type Served } from './app-fixture.js';

const builds = new Map<string, BuildView>();
const sent: { name: string; transition: Transition }[] = [];
let refuse: Error | undefined;
let publicStartStop = true;
let workerWarnings: string[] = [];
const workers = (): Promise<WorkerStatus> =>
  Promise.resolve({
    temporal_reachable: true,
    queues: [],
    warnings: workerWarnings,
    checked_at: '2024-05-01T10:00:00.000Z',
  });

const index = {
  get: (name: string) => builds.get(name),
  list: (filter: BuildFilter = {}) =>
    [...builds.values()]
      .filter((b) => filter.repo === undefined || b.commit_info.repo === filter.repo)
      .sort((a, b) => (b.created ?? '').localeCompare(a.created ?? '')),
  all(filter: BuildFilter = {}) {
    return index.list(filter);
  },
  find: (name: string) =>
    name === 'btemporaldown'
      ? Promise.reject(
          new ClientError(`Temporal does not answer: cannot tell whether ${name} exists`, 503),
        )
      : Promise.resolve(builds.get(name)),
  on: () => index,
  off: () => index,
  isSynced: true,
};

const commands = stubCommands({
  transition(name, transition) {
    if (refuse) return Promise.reject(refuse);
    sent.push({ name, transition });
    const build = builds.get(name);
    if (build && transition === 'start') builds.set(name, { ...build, status: 'starting' });
    return Promise.resolve();
  },
});

let served: Served;
let base: string;

beforeAll(async () => {
  const logger = createLogger('silent');
  const app = createApp({
    index: index as never,
    commands,
    logs: noLogs,
    settings: {
      repos: () => [],
      maxStarted: 2,
      maxDeployed: 10,
      admin: {},
      publicStartStop: true,
    },
    temporalReady: () => Promise.resolve(true),
    workers,
    logger,
    metrics: new Registry(),
    extra: [
      webUi({
        index,
        commands,
        workers,
        repos: () => [{ repo: 'acme/.*', branch: '(main|1[0-9]\\.0)', sticky: true }],
        get publicStartStop() {
          return publicStartStop;
        },
        logger,
      }),
    ],
  });
  served = await serve(app);
  base = served.base;
});

afterAll(() => served.close());

const mainOld = view({ sha: 'a1', status: 'stopped', created: '2024-05-01T10:00:00Z' });
const mainNew = view({ sha: 'a2', status: 'started', created: '2024-05-02T10:00:00Z' });
const stable = view({
  sha: 'b1',
  branch: '16.0',
  status: 'failed',
  created: '2024-05-01T09:00:00Z',
  failure: 'init Job failed: exit 3',
});
const pr12 = view({ sha: 'c1', pr: 12, status: 'initializing', created: '2024-05-03T10:00:00Z' });
const pr7 = view({
  sha: 'c2',
  pr: 7,
  branch: '16.0',
  status: 'todo',
  created: '2024-05-03T11:00:00Z',
});
const other = view({
  repo: 'acme/web.site-x',
  sha: 'd1',
  status: 'started',
  created: '2024-05-01T08:00:00Z',
});
const evil = view({
  sha: 'e1',
  branch: '<script>alert(1)</script>',
  status: 'stopped',
  created: '2024-04-01T10:00:00Z',
});

beforeEach(() => {
  builds.clear();
  for (const build of [mainOld, mainNew, stable, pr12, pr7, other, evil])
    builds.set(build.name, build);
  sent.length = 0;
  refuse = undefined;
  publicStartStop = true;
  workerWarnings = [];
});

async function get(path: string, init: RequestInit = {}) {
  const response = await fetch(`${base}${path}`, init);
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** A GET with the path sent byte for byte (fetch would resolve `..` first). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    const req = request({ host: url.hostname, port: url.port, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The rows of a repo page, in page order, with the builds of each in card order. */
function rowsOf(html: string): string[] {
  const rows: string[] = [];
  for (const section of html.split('<section class="row"').slice(1)) {
    const head = /data-kind="(\w+)" data-key="([^"]*)"/.exec(section);
    const cards = [...section.matchAll(/<article class="card [^"]*" data-build="(\w+)"/g)];
    rows.push(`${head?.[1]} ${head?.[2]}: ${cards.map((m) => m[1]).join(' ')}`);
  }
  return rows;
}

describe('home page', () => {
  it('lists the repos with builds, their counts and the configured patterns', async () => {
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).toContain('<li class="repo" data-repo="acme/shop">');
    expect(page.text).toContain('<a class="repo-name" href="/repos/acme/web.site-x">');
    expect(page.text).toMatch(/<span class="count status-started">started<b>1<\/b><\/span>/);
    expect(page.text).toContain('6 builds');
    expect(page.text).toContain('<code>(main|1[0-9]&#92;.0)</code>');
    expect(page.text).toContain('<script type="module" src="/static/app.js"></script>');
  });

  it('filters repos by the query', async () => {
    const page = await get('/?q=web');
    expect(page.text).toContain('data-repo="acme/web.site-x"');
    expect(page.text).not.toContain('data-repo="acme/shop"');
  });
});

describe('repo page', () => {
  it('groups builds in branch rows and pull request rows, newest first', async () => {
    const page = await get('/repos/acme/shop');
    expect(page.status).toBe(200);
    expect(rowsOf(page.text)).toEqual([
      `branch 16.0: ${stable.name}`,
      `branch <script>alert(1)</script>: ${evil.name}`.replace(/</g, '&lt;').replace(/>/g, '&gt;'),
      `branch main: ${mainNew.name} ${mainOld.name}`,
      `pr 12: ${pr12.name}`,
      `pr 7: ${pr7.name}`,
    ]);
    expect(page.text).not.toContain(other.name);
    // A PR row names its target branch; a card its PR.
    expect(page.text).toMatch(
      /#7<\/a>\s*<span class="target">into<\/span>\s*<a class="branch" href="[^"]+\/tree\/16\.0" title="16\.0">16\.0<\/a>/,
    );
    expect(page.text).toContain(
      `<a class="pr" href="https://github.com/acme/shop/pull/12">#12</a>`,
    );
  });

  it('shows each card with its status, links and the buttons its status allows', async () => {
    const page = await get('/repos/acme/shop');
    const card = (name: string) => {
      const start = page.text.indexOf(`data-build="${name}"`);
      return page.text.slice(start, page.text.indexOf('</article>', start));
    };
    const started = card(mainNew.name);
    expect(started).toContain('data-status="started"');
    expect(started).toContain(`<a class="sha" href="${mainNew.repo_commit_link}"`);
    expect(started).toContain(`>${mainNew.commit_info.git_commit.slice(0, 7)}</a>`);
    expect(started).toContain(`<a href="${mainNew.deploy_link}">live</a>`);
    expect(started).toContain(`<a href="/api/v1/builds/${mainNew.name}/log">log</a>`);
    expect(started).toContain(`<a href="/api/v1/builds/${mainNew.name}/init-log">init log</a>`);
    expect(started).toContain('data-action="start" disabled=""');
    expect(started).toMatch(/data-action="stop">stop/);
    expect(started).toMatch(/data-action="reset">reset/);
    const stopped = card(mainOld.name);
    expect(stopped).toMatch(/data-action="start">start/);
    expect(stopped).toContain('data-action="stop" disabled=""');
    // A stopped build's live link wakes it.
    expect(stopped).toContain(`<a href="/builds/${mainOld.name}?live">live</a>`);
    expect(card(stable.name)).toContain('<p class="reason">init Job failed: exit 3</p>');
  });

  it('links the cleanup log of a build whose cleanup failed, with its reason', async () => {
    const stuck = view({
      sha: 'f1',
      branch: 'stuck',
      status: 'cleanup-failed',
      created: '2024-05-04T10:00:00Z',
      failure: 'CleanupFailed: cleanup Job x-cleanup-4 failed: BackoffLimitExceeded',
    });
    builds.set(stuck.name, stuck);
    const page = await get('/repos/acme/shop');
    const start = page.text.indexOf(`data-build="${stuck.name}"`);
    const card = page.text.slice(start, page.text.indexOf('</article>', start));
    expect(card).toContain(`<a href="/api/v1/builds/${stuck.name}/cleanup-log">cleanup log</a>`);
    expect(card).toContain('<p class="reason">CleanupFailed: cleanup Job x-cleanup-4 failed');
    expect(card).toMatch(/data-action="undeploy">undeploy|data-action="reset" disabled=""/);
    const stopped = page.text.slice(page.text.indexOf(`data-build="${mainOld.name}"`));
    expect(stopped.slice(0, stopped.indexOf('</article>'))).not.toContain('cleanup log');
  });

  it('links the image build log of a build with an image build, and shows building', async () => {
    const building = {
      ...view({ sha: 'g1', branch: 'img', status: 'building', created: '2024-05-04T11:00:00Z' }),
      image_status: 'building',
    };
    builds.set(building.name, building);
    const page = await get('/repos/acme/shop');
    const start = page.text.indexOf(`data-build="${building.name}"`);
    const card = page.text.slice(start, page.text.indexOf('</article>', start));
    expect(card).toContain('data-status="building"');
    expect(card).toContain(`<a href="/api/v1/builds/${building.name}/build-log">build log</a>`);
    expect(card).toMatch(/data-action="reset">reset/);
    const stopped = page.text.slice(page.text.indexOf(`data-build="${mainOld.name}"`));
    expect(stopped.slice(0, stopped.indexOf('</article>'))).not.toContain('build log');
    const css = await get('/static/app.css');
    expect(css.text).toContain('.status-building {');
    // app.js takes the statuses from the page: the server's one table.
    expect(page.text).toContain(`data-statuses="${buildStatuses.join(',')}"`);
  });

  it('escapes what users control: branch names', async () => {
    const page = await get('/repos/acme/shop');
    expect(page.text).not.toContain('<script>alert');
    expect(page.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
  });

  it('serves repos with dots and dashes, and repos without builds yet', async () => {
    const page = await get('/repos/Acme/Web.Site-X');
    expect(rowsOf(page.text)).toEqual([`branch main: ${other.name}`]);
    const empty = await get('/repos/acme/new-repo');
    expect(empty.status).toBe(200);
    expect(empty.text).toContain('data-repo="acme/new-repo"');
    expect(rowsOf(empty.text)).toEqual([]);
  });
});

describe('build page', () => {
  it('shows every field and the failure reason', async () => {
    const page = await get(`/builds/${stable.name}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain(`data-build="${stable.name}"`);
    expect(page.text).toContain(stable.commit_info.git_commit);
    expect(page.text).toContain(`<a href="${stable.deploy_link}">${stable.deploy_link}</a>`);
    expect(page.text).toMatch(/data-field="failure_reason"[^>]*>init Job failed: exit 3</);
    expect(page.text).toContain('2024-05-01 09:00 UTC');
  });

  it('answers 404 with a page for an unknown build', async () => {
    const page = await get('/builds/unknown');
    expect(page.status).toBe(404);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).toContain('There is no build named unknown.');
  });
});

describe('?live', () => {
  it('redirects to a started build', async () => {
    const page = await get(`/builds/${mainNew.name}?live`, { redirect: 'manual' });
    expect(page.status).toBe(302);
    expect(new URL(page.headers.get('location') ?? '').href).toBe(
      new URL(mainNew.deploy_link).href,
    );
    expect(sent).toEqual([]);
  });

  it('starts a stopped build and holds the visitor', async () => {
    const page = await get(`/builds/${mainOld.name}?live`);
    expect(sent).toEqual([{ name: mainOld.name, transition: 'start' }]);
    expect(page.status).toBe(200);
    expect(page.text).toContain('data-page="holding"');
    expect(page.text).toContain(`data-build="${mainOld.name}"`);
    expect(page.text).toContain('Starting …');
    expect(page.text).toMatch(/id="holding-status"[^>]*>starting</);
  });

  it('shows why a stopped build could not be started', async () => {
    refuse = new InvalidTransitionError('too many builds started');
    const page = await get(`/builds/${mainOld.name}?live`);
    expect(page.text).toContain('Could not start the build: too many builds started');
  });

  it('does not start anything when start and stop are not public', async () => {
    publicStartStop = false;
    const page = await get(`/builds/${mainOld.name}?live`);
    expect(sent).toEqual([]);
    expect(page.text).toContain('data-page="build"');
    expect(page.text).toContain('Starting it needs the admin login');
  });

  it('shows the build page with a note for other statuses', async () => {
    const page = await get(`/builds/${pr12.name}?live`);
    expect(sent).toEqual([]);
    expect(page.text).toContain('data-page="build"');
    expect(page.text).toContain('still being initialized');
  });
});

describe('no worker', () => {
  const banner = (html: string) => /<div id="banner"[^>]*>([\s\S]*?)<\/div>/.exec(html);

  it('puts a banner naming the queue on every page while a queue has no worker', async () => {
    workerWarnings = [
      noWorkerWarning('builds', 'runboat-builds'),
      noWorkerWarning('init', 'runboat-init'),
    ];
    for (const path of ['/', '/repos/acme/shop', `/builds/${mainOld.name}`, '/builds/unknown']) {
      const found = banner((await get(path)).text);
      expect(found?.[0], path).toContain('role="alert">');
      expect(found?.[0], path).not.toContain('hidden');
      expect(found?.[1], path).toContain(
        '<p>No worker is polling the builds task queue “runboat-builds”: changes are queued until a worker runs',
      );
      expect(found?.[1], path).toContain('the init task queue “runboat-init”');
    }
    const status = JSON.parse((await get('/api/v1/status')).text) as { workers: WorkerStatus };
    expect(status.workers.warnings).toEqual(workerWarnings);
  });

  it('keeps the banner hidden and empty while workers poll', async () => {
    const found = banner((await get('/')).text);
    expect(found?.[0]).toContain('hidden=""');
    expect(found?.[1]).not.toContain('<p>');
  });

  it('shows a queued build with no button to press', async () => {
    const queued = view({ sha: 'f1', status: 'queued', created: '2024-05-04T10:00:00Z' });
    builds.set(queued.name, queued);
    const page = await get('/repos/acme/shop');
    const start = page.text.indexOf(`data-build="${queued.name}"`);
    const card = page.text.slice(start, page.text.indexOf('</article>', start));
    expect(card).toContain('data-status="queued"');
    expect(card).toContain('<span class="status">queued</span>');
    for (const action of ['start', 'stop', 'reset']) {
      expect(card).toContain(`data-action="${action}" disabled=""`);
    }
    const live = await get(`/builds/${queued.name}?live`);
    expect(live.text).toContain('This build is queued');
    expect(sent).toEqual([]);
  });

  it('says so on a page when Temporal cannot tell whether a build exists', async () => {
    const page = await get('/builds/btemporaldown');
    expect(page.status).toBe(503);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).toContain('<h1>Cannot tell</h1>');
    expect(page.text).toContain(
      'Temporal does not answer: cannot tell whether btemporaldown exists',
    );
  });
});

describe('static files', () => {
  it('are served with their content types and a short cache', async () => {
    const js = await get('/static/app.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('public, max-age=60');
    expect(js.text).toContain("new EventSource('/api/v1/build-events')");
    const css = await get('/static/app.css');
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await get('/static/nothing.js')).status).toBe(404);
  });

  it('never leave their directory', async () => {
    for (const path of [
      '/static/../package.json',
      '/static/%2e%2e/package.json',
      '/static/..%2f..%2fpackage.json',
      '/static/../templates/layout.njk',
    ]) {
      const answer = await rawGet(path);
      // Refused (koa-static: 403 for a path leaving the directory, 400 for one it cannot decode).
      expect([400, 403], path).toContain(answer.status);
      expect(JSON.parse(answer.body), path).toHaveProperty('error');
      expect(answer.body, path).not.toContain('runboat-temporal');
    }
  });
});

describe('the rest of the application', () => {
  it('is passed on: API routes and other methods', async () => {
    const api = await get('/api/v1/builds?repo=acme/web.site-x');
    expect(JSON.parse(api.text)).toEqual([other]);
    const post = await get('/', { method: 'POST' });
    expect(post.status).toBe(404);
    expect(post.headers.get('content-type')).toMatch(/json/);
  });
});
