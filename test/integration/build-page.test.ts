/**
 * The build page that explains a build (docs/operations.md, "The build page"), against the real
 * system: the API process, a worker, Temporal and Kubernetes. Its timeline comes from the
 * workflow's history (GET /api/v1/builds/{name}/timeline); its init log is followed live while
 * the init runs, then replaced by the kept log, with the failure reason next to the line that
 * said it. kwok serves a file of this test as the log of every pod of the test's namespace
 * (dev/kwok-logs.ts), so the lines the page shows can only come through the whole chain.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTimelines, type Timeline } from '../../api/timeline.js';
import { appendPodLog, servePodLogs } from '../../dev/kwok-logs.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { buildName } from '../../domain/names.js';
import { mergePatch } from '../../lib/kube.js';
import {
  createBuildEnv,
  cycleUntilContinuedAsNew,
  slowInitRepo,
  testRepos,
  type BuildEnv,
} from './build-env.js';
import { launchChromium } from './browser.js';
import { eventually, triggerBranch } from './helpers.js';

const TOKEN = 'test-admin-token-build-page-0123';
const TEMPORAL_UI = 'http://temporal-ui.test:8233';
const SCREENSHOT = '/tmp/build-page.png';
const ESC = '\x1b';

/** Init pods of `acme/slow` run 25 s: their build stays initializing meanwhile. */
const slowRepo = slowInitRepo('25s');

let env: BuildEnv;
let api: WorkerProcess & { url: string };
let browser: Browser;
let page: Page;
/** The file kwok serves as the log of every pod of the test's namespace. */
let podLog: string;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [slowRepo, testRepos.failing, testRepos.acme] });
  const dir = await mkdtemp(join(tmpdir(), 'runboat-build-page-'));
  podLog = join(dir, 'pods.log');
  await servePodLogs(env.kube.config, {
    namespace: env.namespace,
    file: podLog,
    lines: [
      `${ESC}[1;32mINFO${ESC}[0m odoo: loading <script>window.pwned = 1</script>`,
      `${ESC}[33mWARNING${ESC}[0m a broken escape at the end ${ESC}[31`,
    ],
  });
  // One started build at most: a second start is an eviction, which a timeline must tell.
  await env.startWorker({ RUNBOAT_MAX_STARTED: '1' });
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: 'test-secret',
      RUNBOAT_ADMIN_TOKEN: TOKEN,
      RUNBOAT_TEMPORAL_UI_URL: TEMPORAL_UI,
    },
    join(dir, 'api.log'),
  );
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
});

afterAll(async () => {
  await browser?.close();
  await api?.stop();
  await env?.close();
});

async function call(method: string, path: string): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const text = await response.text();
  return { status: response.status, json: text ? (JSON.parse(text) as unknown) : undefined };
}

const trigger = (repo: string, branch: string) => triggerBranch(api.url, TOKEN, repo, branch);

async function apiStatus(name: string): Promise<string | undefined> {
  const { status, json } = await call('GET', `/api/v1/builds/${name}`);
  return status === 200 ? (json as { status: string }).status : `HTTP ${status}`;
}

async function waitForStatus(name: string, status: string): Promise<void> {
  await eventually(async () => expect(await apiStatus(name)).toBe(status), 90_000);
}

async function timeline(name: string): Promise<Timeline> {
  const { status, json } = await call('GET', `/api/v1/builds/${name}/timeline`);
  expect(status).toBe(200);
  return json as Timeline;
}

/** Whether `wanted` appear in `titles` in this order (other entries between them allowed). */
function inOrder(titles: readonly string[], wanted: readonly string[]): string[] {
  const missing: string[] = [];
  let at = 0;
  for (const title of wanted) {
    const found = titles.indexOf(title, at);
    if (found < 0) missing.push(title);
    else at = found + 1;
  }
  return missing;
}

describe('the timeline of a build', () => {
  it('tells init, start, stop, reset and undeploy in order, with times', async () => {
    const name = await trigger('acme/shop', 'timeline');
    await waitForStatus(name, 'stopped');
    expect((await call('POST', `/api/v1/builds/${name}/start`)).status).toBe(202);
    await waitForStatus(name, 'started');
    // The Deployment is ready a moment before its workflow has seen it so: wait for the workflow.
    await eventually(async () => {
      const titles = (await timeline(name)).entries.map((entry) => entry.title);
      expect(titles).toContain('started');
    }, 60_000);
    expect((await call('POST', `/api/v1/builds/${name}/stop`)).status).toBe(202);
    await waitForStatus(name, 'stopped');
    expect((await call('POST', `/api/v1/builds/${name}/reset`)).status).toBe(202);
    await eventually(async () => {
      const titles = (await timeline(name)).entries.map((entry) => entry.title);
      expect(titles.filter((title) => title === 'init ended: succeeded')).toHaveLength(2);
    }, 90_000);
    await waitForStatus(name, 'stopped');
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);

    // The build is gone from the index; its history still tells its story.
    await eventually(async () => {
      expect(await apiStatus(name)).toBe('HTTP 404');
      const last = (await timeline(name)).entries.at(-1);
      expect(last?.title).toBe('undeployed');
    }, 90_000);
    const told = await timeline(name);
    const titles = told.entries.map((entry) => entry.title);
    expect(
      inOrder(titles, [
        'queued',
        'apply the deployment kubefiles',
        'init started',
        'init ended: succeeded',
        'stopped',
        'start asked for',
        'scale to 1',
        'starting',
        'wait for a ready pod',
        'started',
        'stop asked for',
        'scale to 0',
        'stopped',
        'reset asked for',
        'apply the deployment kubefiles again',
        'todo',
        'init started',
        'init ended: succeeded',
        'stopped',
        'undeploy asked for',
        'undeploying',
        `cleanup Job ${name}-cleanup-1`,
        "delete the build's objects, then its finalizer",
        'undeployed',
      ]),
    ).toEqual([]);
    expect(told.entries[0]?.kind).toBe('queued');
    expect(told.entries[0]?.detail).toMatch(
      /^asked for through the API \(request [0-9a-f-]{36}\)$/,
    );
    const times = told.entries.map((entry) => Date.parse(entry.time));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(told.truncated).toBe(false);
    expect(told.workflow).toEqual({
      id: name,
      link: `${TEMPORAL_UI}/namespaces/${env.temporal.namespace}/workflows/${name}`,
    });
  }, 300_000);

  it('goes back across continued runs, within its caps', async () => {
    const commit = env.commit('acme/shop', 'long-lived');
    const name = buildName(commit);
    // A run continues as new past 60 events: start and stop until it has.
    const handle = await env.build(commit, 60);
    await env.waitForStatus(name, 'stopped');
    await cycleUntilContinuedAsNew(env, handle, name);

    const whole = await createTimelines({
      client: env.client,
      namespace: env.temporal.namespace,
    }).timeline(name);
    const titles = whole.entries.map((entry) => entry.title);
    expect(whole.truncated).toBe(false);
    expect(whole.workflow.link).toBeNull();
    // The first run's story, then the next run's.
    expect(inOrder(titles, ['queued', 'init ended: succeeded', 'continued as new'])).toEqual([]);
    expect(titles).toEqual(expect.arrayContaining(['start asked for', 'stop asked for']));

    const capped = await createTimelines({
      client: env.client,
      namespace: env.temporal.namespace,
      limits: { maxEntries: 5, maxEvents: 1000 },
    }).timeline(name);
    expect(capped.truncated).toBe(true);
    expect(capped.entries).toEqual(whole.entries.slice(-5));
    // Only the newest events read: the first run's start is out of reach.
    const short = await createTimelines({
      client: env.client,
      namespace: env.temporal.namespace,
      limits: { maxEvents: 20 },
    }).timeline(name);
    expect(short.truncated).toBe(true);
    expect(short.entries.map((entry) => entry.title)).not.toContain('queued');
    expect(short.entries.at(-1)).toEqual(whole.entries.at(-1));
  }, 300_000);

  it('tells a scale by hand (drift) and an eviction by the fleet, each with why', async () => {
    const first = await trigger('acme/shop', 'evicted');
    const second = await trigger('acme/shop', 'scaled-by-hand');
    await waitForStatus(first, 'stopped');
    await waitForStatus(second, 'stopped');
    expect((await call('POST', `/api/v1/builds/${first}/start`)).status).toBe(202);
    await eventually(async () => {
      expect((await timeline(first)).entries.map((entry) => entry.title)).toContain('started');
    }, 60_000);

    // Started by hand, past the watcher: taken as a start, and the fleet stops the other one.
    await env.kube.apps.patchNamespacedDeployment(
      { name: second, namespace: env.namespace, body: { spec: { replicas: 1 } } },
      mergePatch,
    );
    await eventually(async () => {
      const drift = (await timeline(second)).entries.find((entry) => entry.kind === 'drift');
      expect(drift?.title).toBe('drift seen');
      expect(drift?.detail).toMatch(/^its Deployment was scaled by hand to 1: taken as a start/);
    }, 60_000);
    await eventually(async () => {
      const entries = (await timeline(first)).entries;
      const evicted = entries.findIndex((entry) => entry.kind === 'evicted');
      expect(entries[evicted]?.title).toBe('stopped by the fleet');
      expect(entries[evicted]?.detail).toContain('RUNBOAT_MAX_STARTED');
      expect(entries.slice(evicted).map((entry) => entry.title)).toContain('stopped');
    }, 90_000);
    for (const name of [first, second]) {
      expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    }
  }, 240_000);

  it('answers 404 for a build that never was', async () => {
    expect((await call('GET', '/api/v1/builds/b0000000000000000/timeline')).status).toBe(404);
    expect((await call('GET', '/api/v1/builds/..%2F..%2Fetc/timeline')).status).toBe(404);
  });
});

describe('the build page', () => {
  it('follows the init log live while the init runs, then shows the kept log and the timeline', async () => {
    const name = await trigger('acme/slow', 'main');
    await page.goto(`${api.url}/builds/${name}`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.evaluate('window.notReloaded = true');

    // Following: the lines of the pod's log so far, then each new line as it is written.
    const log = page.locator('#init-log');
    await page.locator('#init-log.live').waitFor({ timeout: 90_000 });
    await log.locator('.log-line', { hasText: 'odoo: loading' }).waitFor();
    const mark = randomBytes(4).toString('hex');
    for (const step of [1, 2, 3]) {
      await appendPodLog(podLog, [`${ESC}[36minit ${mark} step ${step}${ESC}[0m`]);
      await log.locator('.log-line', { hasText: `init ${mark} step ${step}` }).waitFor();
      // Still the live log of a running init, not the kept one after it.
      expect(await page.locator('[data-field="status"]').textContent()).toBe('initializing');
    }
    await page.screenshot({ path: '/tmp/build-page-live.png', fullPage: true });
    const lines = await log.locator('.log-line').allTextContents();
    const steps = lines.filter((line) => line.includes(mark));
    expect(steps).toEqual([1, 2, 3].map((step) => `init ${mark} step ${step}`));
    expect(await log.locator('.ansi-fg-6', { hasText: `init ${mark} step 2` }).count()).toBe(1);
    // Colours as classes; markup of the log shown as text, never run.
    expect(await log.locator('.ansi-bold.ansi-fg-2').first().textContent()).toBe('INFO');
    expect(lines.some((line) => line.includes('<script>window.pwned = 1</script>'))).toBe(true);
    expect(await log.locator('script').count()).toBe(0);
    expect(await page.evaluate('window.pwned === undefined')).toBe(true);
    expect(lines).toContain('WARNING a broken escape at the end ');

    // The init ends: the page shows the final state and the kept log, without a reload.
    await page
      .locator('[data-field="status"]', { hasText: 'stopped' })
      .waitFor({ timeout: 90_000 });
    await page.locator('#init-log:not(.live) .log-line', { hasText: 'succeeded' }).waitFor();
    expect(await log.locator('.log-line').first().textContent()).toBe(
      `# ${name}-init-1: succeeded`,
    );
    expect(await log.locator('.log-line', { hasText: `init ${mark} step 3` }).count()).toBe(1);

    const timelineTitles = page.locator('#timeline .tl-title');
    await page
      .locator('#timeline .tl-title', { hasText: 'init ended: succeeded' })
      .waitFor({ timeout: 30_000 });
    expect(
      inOrder(await timelineTitles.allTextContents(), [
        'queued',
        'init started',
        'initializing',
        'init ended: succeeded',
        'stopped',
      ]),
    ).toEqual([]);
    expect(await page.locator('#temporal-link').getAttribute('href')).toBe(
      `${TEMPORAL_UI}/namespaces/${env.temporal.namespace}/workflows/${name}`,
    );
    expect(await page.evaluate('window.notReloaded === true')).toBe(true);
  }, 240_000);

  it('puts the failure reason next to the log line that said it', async () => {
    await appendPodLog(podLog, [
      // As the default kubefiles' scripts say it (kubefiles/README.md): the worker reads it too.
      'runboat: error: the database could not be created',
      'cleaning up after the error',
    ]);
    const name = await trigger('acme/broken', 'main');
    await page.goto(`${api.url}/builds/${name}`);
    await page.locator('[data-field="status"]', { hasText: 'failed' }).waitFor({ timeout: 90_000 });
    const reason = page.locator('#init-log .log-cause + .log-reason');
    await reason.waitFor({ timeout: 30_000 });
    expect(await reason.textContent()).toMatch(
      /^failed: the database could not be created \(.*BackoffLimitExceeded/,
    );
    expect(await page.locator('#init-log .log-cause').textContent()).toBe(
      'runboat: error: the database could not be created',
    );
    await page
      .locator('#timeline .tl-failure .tl-title', { hasText: 'init ended: failed' })
      .waitFor({ timeout: 30_000 });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }, 180_000);
});
