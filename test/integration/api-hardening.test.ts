/**
 * The API and the UI at their edges, against the real system (the API process, a worker, Temporal
 * and Kubernetes): admin sessions and the refusal of cross-site requests (over HTTP and in
 * Chromium), reset and undeploy kept for the admin where start and stop are public, the caps and
 * heartbeats of the build event streams, 503 when Temporal cannot be reached, GitHub links of
 * branches with unusual names, and the UI's pages for what does not exist.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildView } from '../../domain/build-view.js';
import { buildName } from '../../domain/names.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { launchChromium } from './browser.js';
import { eventually } from './helpers.js';

const TOKEN = 'hardening-admin-token-0123456789';
const USER = 'ops';
const PASSWORD = 'p:ss w0rd';
const FOREIGN = 'http://evil.example';

let env: BuildEnv;
let dir: string;
let api: WorkerProcess & { url: string };
const processes: WorkerProcess[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  await env.startWorker();
  dir = await mkdtemp(join(tmpdir(), 'runboat-hardening-'));
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: 'test-secret',
      RUNBOAT_ADMIN_TOKEN: TOKEN,
      RUNBOAT_ADMIN_USER: USER,
      RUNBOAT_ADMIN_PASSWORD: PASSWORD,
      RUNBOAT_PUBLIC_START_STOP: 'true',
      RUNBOAT_BASE_URL: 'http://runboat.example',
      RUNBOAT_SESSION_SECRET: randomBytes(24).toString('hex'),
      RUNBOAT_EVENTS_MAX_STREAMS: '3',
      RUNBOAT_EVENTS_MAX_STREAMS_PER_CLIENT: '2',
      RUNBOAT_EVENTS_HEARTBEAT_SECONDS: '0.5',
    },
    join(dir, 'api.log'),
  );
  processes.push(api);
}, 180_000);

afterAll(async () => {
  await Promise.all(processes.map((process) => process.stop()));
  for (const server of servers) server.close();
  await env?.close();
});

const bearer = { authorization: `Bearer ${TOKEN}` };
const basic = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };

async function call(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
) {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers,
    body: body ?? null,
    redirect: 'manual',
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not JSON: a page.
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** Asks for a build of a new commit of `branch` and waits until it is stopped. */
async function stoppedBuild(branch: string, base = api.url): Promise<BuildView> {
  const sha = randomBytes(20).toString('hex');
  const asked = await fetch(`${base}/api/v1/builds/trigger/branch`, {
    method: 'POST',
    headers: { ...bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ repo: 'acme/shop', branch, sha }),
  });
  expect(asked.status).toBe(202);
  const name = buildName({ repo: 'acme/shop', targetBranch: branch, pr: null, gitCommit: sha });
  return eventually(async () => {
    const answer = await fetch(`${base}/api/v1/builds/${name}`);
    const build = (await answer.json()) as BuildView;
    expect(build.status).toBe('stopped');
    return build;
  }, 120_000);
}

/** How many resets a build's workflow took (its history's accepted updates). */
async function resetsOf(name: string): Promise<number> {
  const history = await env.client.workflow.getHandle(name).fetchHistory();
  return (history.events ?? []).filter(
    (event) =>
      event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name ===
      'reset',
  ).length;
}

/** Logs in with the form; returns the cookie to send back. */
async function login(fields: Record<string, string>) {
  const answer = await call(
    'POST',
    '/login',
    { 'content-type': 'application/x-www-form-urlencoded' },
    new URLSearchParams(fields).toString(),
  );
  const setCookie = answer.headers.get('set-cookie') ?? '';
  return { ...answer, setCookie, cookie: setCookie.split(';')[0] ?? '' };
}

describe('admin rights where start and stop are public', () => {
  let build: BuildView;
  beforeAll(async () => {
    build = await stoppedBuild('public');
  }, 150_000);

  it('lets anyone start and stop, and keeps reset and undeploy for the admin', async () => {
    const reset = await call('POST', `/api/v1/builds/${build.name}/reset`);
    expect(reset.status).toBe(401);
    expect(reset.json.error).toBe('authentication required');
    // No Basic challenge: a browser asked for Basic would keep sending it, cross-site too.
    expect(reset.headers.get('www-authenticate')).toBe('Bearer realm="runboat"');
    const undeploy = await call('DELETE', `/api/v1/builds/${build.name}`);
    expect(undeploy.status).toBe(401);
    expect((await call('POST', `/api/v1/builds/${build.name}/start`)).status).toBe(202);
    expect((await call('POST', `/api/v1/builds/${build.name}/stop`)).status).toBe(202);
    expect(await resetsOf(build.name)).toBe(0);
  }, 60_000);
});

describe('admin sessions', () => {
  let build: BuildView;
  beforeAll(async () => {
    build = await stoppedBuild('sessions');
  }, 150_000);

  it('refuses a wrong login and opens a session for a right one', async () => {
    const wrong = await login({ user: USER, password: 'nope', next: '/' });
    expect(wrong.status).toBe(401);
    expect(wrong.setCookie).toBe('');
    expect(wrong.text).toContain('Wrong user, password or token.');

    const right = await login({ user: USER, password: PASSWORD, next: '/repos/acme/shop' });
    expect(right.status).toBe(303);
    expect(right.headers.get('location')).toBe('/repos/acme/shop');
    // Secure too where RUNBOAT_BASE_URL is https (test/unit/session.test.ts).
    expect(right.setCookie).toMatch(
      /^runboat_session=v1\.[^;]+; Max-Age=43200; Path=\/; HttpOnly; SameSite=Strict$/,
    );
    const byToken = await login({ token: TOKEN });
    expect(byToken.status).toBe(303);
    // Never to another site.
    const away = await login({ token: TOKEN, next: '//evil.example/x' });
    expect(away.headers.get('location')).toBe('/');
  });

  it('needs the page CSRF token and a request of this site for an admin action', async () => {
    const { cookie } = await login({ user: USER, password: PASSWORD });
    const page = await call('GET', `/builds/${build.name}`, { cookie });
    const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page.text)?.[1] ?? '';
    expect(csrf).not.toBe('');
    expect(page.text).toContain('Log out');

    const noToken = await call('POST', `/api/v1/builds/${build.name}/reset`, { cookie });
    expect(noToken.status).toBe(403);
    expect(noToken.json.error).toMatch(/^CSRF token missing or wrong/);
    const wrongToken = await call('POST', `/api/v1/builds/${build.name}/reset`, {
      cookie,
      'x-csrf-token': csrf.slice(1),
    });
    expect(wrongToken.status).toBe(403);
    const foreign = await call('POST', `/api/v1/builds/${build.name}/reset`, {
      cookie,
      'x-csrf-token': csrf,
      origin: FOREIGN,
    });
    expect(foreign.status).toBe(403);
    expect(foreign.json.error).toBe(
      `cross-site request refused: Origin "${FOREIGN}" is not this site (http://runboat.example or ${api.url})`,
    );
    const foreignReferer = await call('DELETE', `/api/v1/builds/${build.name}`, {
      cookie,
      'x-csrf-token': csrf,
      referer: `${FOREIGN}/page`,
    });
    expect(foreignReferer.status).toBe(403);
    const forged = await call('POST', `/api/v1/builds/${build.name}/reset`, {
      cookie: `${cookie}x`,
      'x-csrf-token': csrf,
    });
    expect(forged.status).toBe(401);
    expect(await resetsOf(build.name)).toBe(0);

    const own = await call('POST', `/api/v1/builds/${build.name}/reset`, {
      cookie,
      'x-csrf-token': csrf,
      origin: api.url,
    });
    expect(own.status).toBe(202);
    expect(await resetsOf(build.name)).toBe(1);
    const logout = await call('POST', '/logout', { cookie, origin: api.url });
    expect(logout.status).toBe(303);
    expect(logout.headers.get('set-cookie')).toMatch(/^runboat_session=; Max-Age=0; Path=\//);
  }, 60_000);

  it('checks Basic credentials for cross-site use, and never bearer tokens', async () => {
    const crossSite = await call('DELETE', `/api/v1/builds/${build.name}`, {
      ...basic,
      origin: FOREIGN,
    });
    expect(crossSite.status).toBe(403);
    // A script sends no Origin; a bearer token is never sent by a browser on its own.
    const script = await call('POST', `/api/v1/builds/${build.name}/stop`, basic);
    expect([202, 409]).toContain(script.status);
    const token = await call('POST', `/api/v1/builds/${build.name}/stop`, {
      ...bearer,
      origin: FOREIGN,
    });
    expect([202, 409]).toContain(token.status);
    expect(await env.deployment(build.name)).toBeDefined();
  }, 60_000);
});

/** Opens a build event stream; resolves with the response (or the refusal) and its socket. */
function openStream(client: string): Promise<{
  status: number;
  response: IncomingMessage;
  text: () => string;
  ended: Promise<void>;
}> {
  return new Promise((resolve, reject) => {
    const url = new URL(`${api.url}/api/v1/build-events`);
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        headers: { 'x-forwarded-for': client },
      },
      (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        const ended = new Promise<void>((done) => response.once('end', done));
        resolve({ status: response.statusCode ?? 0, response, text: () => text, ended });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('build event streams', () => {
  it('caps the streams per client and in total, and beats while idle', async () => {
    const a1 = await openStream('10.0.0.1');
    const a2 = await openStream('10.0.0.1');
    expect([a1.status, a2.status]).toEqual([200, 200]);
    const a3 = await openStream('10.0.0.1');
    expect(a3.status).toBe(503);
    expect(a3.response.headers['retry-after']).toBe('10');
    await a3.ended;
    expect(JSON.parse(a3.text())).toEqual({
      error:
        'too many build event streams open from 10.0.0.1 (2): close some pages, or try again later',
    });
    const b1 = await openStream('10.0.0.2');
    expect(b1.status).toBe(200);
    const c1 = await openStream('10.0.0.3');
    expect(c1.status).toBe(503);
    await c1.ended;
    expect(JSON.parse(c1.text()).error).toBe(
      'too many build event streams open (3): try again later',
    );

    // Heartbeats every 0.5 s here (15 s by default).
    await eventually(async () => {
      expect(b1.text().split(': heartbeat\n\n').length).toBeGreaterThan(2);
    }, 5_000);
    const metrics = await call('GET', '/metrics');
    expect(metrics.text).toMatch(/^runboat_build_event_streams 3$/m);
    expect(metrics.text).toMatch(
      /^runboat_build_event_streams_refused_total\{reason="client"\} 1$/m,
    );
    expect(metrics.text).toMatch(
      /^runboat_build_event_streams_refused_total\{reason="total"\} 1$/m,
    );

    // A closed stream frees its place.
    a1.response.destroy();
    await eventually(async () => {
      const again = await openStream('10.0.0.1');
      expect(again.status).toBe(200);
      again.response.destroy();
    }, 5_000);
    for (const open of [a2, b1]) open.response.destroy();
  }, 30_000);
});

describe('Temporal unreachable', () => {
  it('answers 503 with the reason on the routes that talk to Temporal', async () => {
    const build = await stoppedBuild('temporal-down');
    const [host, port] = (env.workerEnv.RUNBOAT_TEMPORAL_ADDRESS ?? '').split(':');
    const sockets = new Set<Socket>();
    const proxy = createTcpServer((socket) => {
      const upstream = connect(Number(port), host);
      sockets.add(socket).add(upstream);
      socket.pipe(upstream).pipe(socket);
      const close = () => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', close);
      upstream.on('error', close);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const behind = await spawnApi(
      {
        ...env.workerEnv,
        RUNBOAT_TEMPORAL_ADDRESS: `127.0.0.1:${(proxy.address() as AddressInfo).port}`,
        RUNBOAT_API_PORT: '0',
        RUNBOAT_WEBHOOK_SECRET: 'test-secret',
        RUNBOAT_ADMIN_TOKEN: TOKEN,
        RUNBOAT_UPDATE_TIMEOUT_SECONDS: '3',
      },
      join(dir, 'api-behind.log'),
    );
    processes.push(behind);
    await eventually(async () => {
      const answer = await fetch(`${behind.url}/api/v1/builds/${build.name}`);
      expect(answer.status).toBe(200);
    }, 30_000);

    // Temporal goes away: no connection is taken any more, and the open ones are cut.
    proxy.close();
    for (const socket of sockets) socket.destroy();
    const timed = async (ask: () => Promise<Response>) => {
      const started = Date.now();
      const answer = await ask();
      return { answer, seconds: (Date.now() - started) / 1000 };
    };
    const asks = {
      trigger: await timed(() =>
        fetch(`${behind.url}/api/v1/builds/trigger/branch`, {
          method: 'POST',
          headers: { ...bearer, 'content-type': 'application/json' },
          body: JSON.stringify({ repo: 'acme/shop', branch: 'main', sha: 'a'.repeat(40) }),
        }),
      ),
      start: await timed(() =>
        fetch(`${behind.url}/api/v1/builds/${build.name}/start`, {
          method: 'POST',
          headers: bearer,
        }),
      ),
      find: await timed(() => fetch(`${behind.url}/api/v1/builds/b${'0'.repeat(20)}`)),
    };
    for (const [route, { answer, seconds }] of Object.entries(asks)) {
      console.log(`Temporal unreachable: ${route} answered ${answer.status} in ${seconds} s`);
      expect(answer.status, route).toBe(503);
      const body = (await answer.json()) as { error: string };
      expect(body.error, route).toMatch(
        /^Temporal does not answer|did not answer start within 3 s/,
      );
      // Within its deadline (3 s here), not after the client's own retries.
      expect(seconds, route).toBeLessThan(10);
    }
    expect(asks.trigger.answer.headers.get('retry-after')).toBe('5');
  }, 180_000);
});

describe('links and pages', () => {
  it('percent-encodes every part of a branch in its GitHub link', async () => {
    const branch = 'q?x=1/100%/a#b';
    const build = await stoppedBuild(branch);
    expect(build.repo_target_branch_link).toBe(
      'https://github.com/acme/shop/tree/q%3Fx%3D1/100%25/a%23b',
    );
    const repo = await call('GET', '/repos/acme/shop', { accept: 'text/html' });
    expect(repo.text).toContain(
      `<a class="branch" href="https://github.com/acme/shop/tree/q%3Fx%3D1/100%25/a%23b" title="${branch}">${branch}</a>`,
    );
  }, 150_000);

  it('answers unknown pages with the HTML page, and API clients with JSON', async () => {
    const page = await call('GET', '/no/such/page', { accept: 'text/html,*/*;q=0.8' });
    expect(page.status).toBe(404);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).toContain('There is no page at /no/such/page.');
    const json = await call('GET', '/no/such/page', { accept: 'application/json' });
    expect(json.status).toBe(404);
    expect(json.json.error).toBe('no such path: GET /no/such/page');
    const api404 = await call('GET', '/api/v1/nothing', { accept: 'text/html' });
    expect(api404.headers.get('content-type')).toMatch(/json/);
  });

  it('says so on the page of a repo that is not configured', async () => {
    const page = await call('GET', '/repos/other/thing', { accept: 'text/html' });
    expect(page.status).toBe(404);
    expect(page.text).toContain(
      'other/thing is not configured for builds (no entry of the repos file matches it), and it has no builds.',
    );
  });
});

describe('in Chromium', () => {
  let browser: Browser;
  let evil: string;
  let build: BuildView;
  let long: BuildView;

  beforeAll(async () => {
    [build, long] = await Promise.all([
      stoppedBuild('browser'),
      stoppedBuild(`long-${'x'.repeat(295)}`),
    ]);
    // A page of another origin (another port of the same host: same site, so the SameSite
    // cookie goes along) that posts a form to the API as soon as it is opened.
    const server = createServer((req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(
        `<form id="f" method="post" action="${api.url}/api/v1/builds/${build.name}/reset"></form>` +
          `<script>document.getElementById('f').submit()</script>`,
      );
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    evil = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    browser = await launchChromium();
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
  });

  it('logs in, then resets a build from its card; a cross-site form post changes nothing', async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();
    const card = `.card[data-build="${build.name}"]`;
    await page.goto(`${api.url}/repos/acme/shop`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.locator(`${card} button[data-action="reset"]`).click();
    await page.locator(`${card} .error`, { hasText: 'login required' }).waitFor();

    await page.locator('a.session', { hasText: 'Log in' }).click();
    await page.fill('input[name="user"]', USER);
    await page.fill('input[name="password"]', PASSWORD);
    await page.click('button[type="submit"]');
    await page.waitForURL(`${api.url}/repos/acme/shop`);
    await page.locator('form.session button', { hasText: 'Log out' }).waitFor();
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    const [answer] = await Promise.all([
      page.waitForResponse((response) => response.url().endsWith(`/${build.name}/reset`)),
      page.locator(`${card} button[data-action="reset"]`).click(),
    ]);
    expect(answer.status()).toBe(202);
    expect(await resetsOf(build.name)).toBe(1);
    await page.locator(`${card}[data-status="stopped"]`).waitFor({ timeout: 120_000 });
    expect(await page.locator(`${card} .error`).isHidden()).toBe(true);

    // The same browser, logged in, opens a page of another origin.
    const attack = await context.newPage();
    const [refused] = await Promise.all([
      attack.waitForResponse((response) => response.url().endsWith(`/${build.name}/reset`)),
      attack.goto(evil),
    ]);
    expect(refused.status()).toBe(403);
    expect(((await refused.json()) as { error: string }).error).toMatch(
      /^cross-site request refused: Origin "http:\/\/127\.0\.0\.1:\d+" is not this site/,
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(await resetsOf(build.name)).toBe(1);
    const after = (await (
      await fetch(`${api.url}/api/v1/builds/${build.name}`)
    ).json()) as BuildView;
    expect(after.status).toBe('stopped');
    await context.close();
  }, 240_000);

  it('keeps a 300-character branch within the page', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    await page.goto(`${api.url}/repos/acme/shop`);
    const link = page.locator(`.row[data-key="${long.commit_info.target_branch}"] a.branch`);
    await link.waitFor();
    expect(await link.getAttribute('title')).toBe(long.commit_info.target_branch);
    const widths = (await page.evaluate(
      '({ page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth })',
    )) as { page: number; view: number };
    expect(widths.page).toBeLessThanOrEqual(widths.view);
    await page.goto(`${api.url}/builds/${long.name}`);
    const build = (await page.evaluate(
      '({ page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth })',
    )) as { page: number; view: number };
    expect(build.page).toBeLessThanOrEqual(build.view);
    await page.close();
  }, 60_000);
});
