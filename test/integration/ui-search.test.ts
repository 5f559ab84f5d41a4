/**
 * What an operator sees of many builds, in a real browser (Chromium through playwright-core)
 * against the real system (the API process, a worker, Temporal and Kubernetes): the fleet summary
 * of every page following builds live, the search box, and cards that tell builds apart by their
 * commit's message and author.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommitInfo } from '../../domain/build.js';
import { buildName } from '../../domain/names.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { launchChromium } from './browser.js';

const SCREENSHOT = '/tmp/ui-search.png';

let env: BuildEnv;
let api: WorkerProcess & { url: string };
let browser: Browser;
let page: Page;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  await env.startWorker();
  const dir = await mkdtemp(join(tmpdir(), 'runboat-ui-search-'));
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: 'test-secret',
      RUNBOAT_PUBLIC_START_STOP: 'true',
      RUNBOAT_MAX_STARTED: '3',
      RUNBOAT_MAX_DEPLOYED: '40',
      RUNBOAT_MAX_INITIALIZING: '2',
    },
    join(dir, 'api.log'),
  );
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await api?.stop();
  await env?.close();
});

const card = (name: string) => `.card[data-build="${name}"]`;
const figure = (key: string) => `#summary .figure[data-key="${key}"]`;

/** The number a figure of the summary shows now. */
async function shown(key: string): Promise<number> {
  return Number(await page.locator(`${figure(key)} .value`).textContent());
}

/** Waits until a figure of the summary shows `value` (the page never reloads meanwhile). */
async function waitForFigure(key: string, value: number, timeout = 60_000): Promise<void> {
  await page
    .locator(`${figure(key)} .value`, { hasText: new RegExp(`^${value}$`) })
    .waitFor({ timeout });
}

function commitOf(pr: number | null, message: string, author: string): CommitInfo {
  return { ...env.commit('acme/shop', 'main', pr), message, author };
}

const first = () => commitOf(null, 'Add the <search> box\n\nA body line', 'Ann Example');
let main: CommitInfo;
let pr: CommitInfo;

describe('the fleet summary', () => {
  it('is on every page, with the limits of the settings', async () => {
    for (const path of ['/', '/repos/acme/shop', '/no-such-page']) {
      await page.goto(`${api.url}${path}`);
      expect(await page.locator(`${figure('started')} .limit`).textContent()).toBe('/3');
      expect(await page.locator(`${figure('deployed')} .limit`).textContent()).toBe('/40');
      expect(await page.locator(`${figure('initializing')} .limit`).textContent()).toBe('/2');
      expect(await page.locator(`${figure('cleanup-failed')} dt`).textContent()).toBe(
        'cleanup failed',
      );
    }
  });

  it('follows a build live: deployed, then started', async () => {
    await page.goto(`${api.url}/`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.evaluate('window.notReloaded = true');
    expect(await shown('deployed')).toBe(0);
    expect(await shown('started')).toBe(0);

    main = first();
    await env.build(main);
    const name = buildName(main);
    await waitForFigure('deployed', 1);
    await env.waitForStatus(name, 'stopped', 90_000);
    await waitForFigure('queued', 0);
    await waitForFigure('initializing', 0);

    const started = await fetch(`${api.url}/api/v1/builds/${name}/start`, { method: 'POST' });
    expect(started.status).toBe(202);
    await waitForFigure('started', 1, 90_000);
    await env.waitForStatus(name, 'started', 90_000);
    expect(await page.locator(figure('started')).getAttribute('class')).toBe('figure level-ok');
    expect(await page.evaluate('window.notReloaded === true')).toBe(true);

    // The figures the page shows are those of the API.
    const status = (await (await fetch(`${api.url}/api/v1/status`)).json()) as {
      summary: { key: string; value: number }[];
    };
    for (const key of ['started', 'deployed', 'queued', 'failed']) {
      expect(await shown(key)).toBe(status.summary.find((f) => f.key === key)?.value);
    }
  }, 240_000);
});

describe('cards and search', () => {
  it('show the commit message and author, and how long ago', async () => {
    pr = commitOf(7, 'Fix: totals 🚀 of “invoices”', 'Bob Builder');
    await env.build(pr);
    await page.goto(`${api.url}/repos/acme/shop`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    const prCard = page.locator(card(buildName(pr)));
    await prCard.waitFor({ timeout: 30_000 });
    expect(await prCard.locator('.commit .message').textContent()).toBe(
      'Fix: totals 🚀 of “invoices”',
    );
    expect(await prCard.locator('.commit .author').textContent()).toBe('Bob Builder');

    const mainCard = page.locator(card(buildName(main)));
    // The first line only, and shown as text, not markup.
    expect(await mainCard.locator('.commit .message').textContent()).toBe('Add the <search> box');
    expect(await mainCard.locator('.commit .message b, .commit .message search').count()).toBe(0);
    const time = mainCard.locator('time.ago');
    expect(await time.getAttribute('title')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(await time.textContent()).toMatch(/^(just now|\d+ min ago)$/);
  }, 120_000);

  it('finds builds by pull request, commit, message and name from the box of any page', async () => {
    const mainName = buildName(main);
    const prName = buildName(pr);
    const search = async (q: string) => {
      await page.fill('#search', q);
      await Promise.all([page.waitForURL(/\/\?q=/), page.press('#search', 'Enter')]);
      return page
        .locator('#results .card')
        .evaluateAll((cards) => cards.map((el) => el.getAttribute('data-build')));
    };

    await page.goto(`${api.url}/builds/${mainName}`);
    expect(await search('#7')).toEqual([prName]);
    expect(page.url()).toBe(`${api.url}/?q=%237`);
    expect(await page.locator('#results-count').textContent()).toBe('1 build');
    expect(await search(main.gitCommit.slice(0, 8))).toEqual([mainName]);
    expect(await search('invoices')).toEqual([prName]);
    expect(await search('ann')).toEqual([mainName]);
    expect(await search(prName)).toEqual([prName]);
    expect((await search('acme/shop main')).sort()).toEqual([mainName, prName].sort());
    expect(await search('no-such-thing')).toEqual([]);
    expect(await page.locator('#results-panel .empty').textContent()).toContain('No build matches');
    // The box keeps the search; the results' cards follow their builds live.
    expect(await page.inputValue('#search')).toBe('no-such-thing');
    expect(await search('#7')).toEqual([prName]);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.evaluate('window.notReloaded = true');
    await env.waitForStatus(prName, 'stopped', 90_000);
    const started = await fetch(`${api.url}/api/v1/builds/${prName}/start`, { method: 'POST' });
    expect(started.status).toBe(202);
    await page
      .locator(`#results ${card(prName)}[data-status="started"]`)
      .waitFor({ timeout: 90_000 });
    expect(await page.evaluate('window.notReloaded === true')).toBe(true);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }, 180_000);
});

describe('pages', () => {
  it('keep a row to its newest cards while builds arrive live, the rest a click away', async () => {
    const commits = Array.from({ length: 7 }, (_, i) =>
      commitOf(null, `Busy change ${i}`, 'Cy Busy'),
    ).map((c) => ({ ...c, targetBranch: 'busy' }));
    for (const commit of commits) await env.build(commit);
    const listed = async () =>
      ((await (await fetch(`${api.url}/api/v1/builds?branch=busy`)).json()) as unknown[]).length;
    for (let tries = 0; (await listed()) < 7; tries++) {
      if (tries > 300) throw new Error('the busy builds are not listed');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    await page.goto(`${api.url}/repos/acme/shop`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.evaluate('window.notReloaded = true');
    const row = page.locator('#branch-rows .row[data-key="busy"]');
    // After the replay of every build (the summary event ends it), still the newest 6.
    await waitForFigure('deployed', 9, 60_000);
    expect(await row.locator('.card').count()).toBe(6);
    expect(await row.locator('.more').textContent()).toBe('1 older build of this branch →');

    // Kubernetes gives creation times to the second, and cards of the same second are ordered by
    // name: the newest build is made in a later second than every busy build, so that it is the
    // newest on the page too (under load, it could share the last one's second).
    const busy = (await (await fetch(`${api.url}/api/v1/builds?branch=busy`)).json()) as {
      created: string | null;
    }[];
    const lastSecond =
      busy
        .map((b) => (b.created ?? '').slice(0, 19))
        .sort()
        .at(-1) ?? '';
    while (new Date().toISOString().slice(0, 19) <= lastSecond) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const newest = { ...commitOf(null, 'Busy change 7', 'Cy Busy'), targetBranch: 'busy' };
    await env.build(newest);
    await row.locator(`.cards > .card:first-child${card(buildName(newest))}`).waitFor({
      timeout: 30_000,
    });
    expect(await row.locator('.card').count()).toBe(6);
    // The card pushed out is counted among the older ones, as the server would count it.
    await row.locator('.more', { hasText: '2 older builds of this branch →' }).waitFor();
    const served = await page.evaluate(`(async () => {
      const html = await (await fetch(location.href)).text();
      const doc = new DOMParser().parseFromString(html, 'text/html');
      return doc.querySelector('.row[data-key="busy"] .more')?.outerHTML ?? '';
    })()`);
    expect(await row.locator('.more').evaluate((el) => el.outerHTML)).toBe(served);
    expect(await page.evaluate('window.notReloaded === true')).toBe(true);

    await Promise.all([page.waitForURL(/\?branch=busy$/), row.locator('.more').click()]);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    expect(await page.locator('#branch-rows .card').count()).toBe(8);
    expect(await page.locator('#pr-rows').isHidden()).toBe(true);
  }, 180_000);
});
