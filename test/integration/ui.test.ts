/**
 * The web UI in a real browser (Chromium through playwright-core) against the real system: the
 * API process, a worker, Temporal and Kubernetes. Builds are asked for by signed webhook
 * deliveries, and the page must follow them live, without being reloaded.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { deliver, pullRequestPayload, pushPayload } from '../../dev/webhook-deliveries.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { launchChromium } from './browser.js';

const SECRET = 'test-secret';
const SCREENSHOT = '/tmp/ui.png';

let env: BuildEnv;
let api: WorkerProcess & { url: string };
let browser: Browser;
let page: Page;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [testRepos.failing, testRepos.acme],
  });
  await env.startWorker();
  const dir = await mkdtemp(join(tmpdir(), 'runboat-ui-'));
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_PUBLIC_START_STOP: 'true',
    },
    join(dir, 'api.log'),
  );
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
});

afterAll(async () => {
  await browser?.close();
  await api?.stop();
  await env?.close();
});

const card = (name: string) => `.card[data-build="${name}"]`;

/** The markup of an element with the whitespace between tags dropped (it shows nowhere). */
const normalized = (html: string) => html.replace(/>\s+</g, '><').trim();

describe('the repo page', () => {
  const sha = randomBytes(20).toString('hex');
  const name = buildName({ repo: 'acme/shop', targetBranch: 'main', pr: null, gitCommit: sha });

  it('shows a pushed build arrive and start, live', async () => {
    await page.goto(`${api.url}/repos/acme/shop`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    // Gone if the page were reloaded: everything below must come through the event stream.
    await page.evaluate('window.notReloaded = true');
    expect(await page.locator('.card').count()).toBe(0);

    const delivery = await deliver(
      `${api.url}/webhooks/github`,
      'push',
      pushPayload({ repo: 'Acme/Shop', branch: 'main', after: sha }),
      SECRET,
    );
    expect(delivery).toMatchObject({ status: 202, body: { build: name } });

    const row = page.locator('#branch-rows .row[data-kind="branch"][data-key="main"]');
    await row.locator(card(name)).waitFor({ timeout: 30_000 });
    await page.locator(`${card(name)}[data-status="stopped"]`).waitFor({ timeout: 90_000 });
    const stopped = page.locator(card(name));
    expect(await stopped.locator('.sha').textContent()).toBe(sha.slice(0, 7));
    expect(await stopped.locator('button[data-action="start"]').isEnabled()).toBe(true);
    expect(await stopped.locator('button[data-action="stop"]').isDisabled()).toBe(true);

    // The card the script built is the card the server renders for the same build.
    // Evaluated as text: the project's TypeScript has no DOM types.
    const markup = (await page.evaluate(`(async (selector) => {
      const live = document.querySelector(selector)?.outerHTML ?? '';
      const html = await (await fetch(location.href)).text();
      const served = new DOMParser().parseFromString(html, 'text/html');
      return { live, served: served.querySelector(selector)?.outerHTML ?? '' };
    })(${JSON.stringify(card(name))})`)) as { live: string; served: string };
    expect(markup.live).not.toBe('');
    expect(normalized(markup.live)).toBe(normalized(markup.served));

    await stopped.locator('button[data-action="start"]').click();
    await page.locator(`${card(name)}[data-status="started"]`).waitFor({ timeout: 90_000 });
    const started = page.locator(card(name));
    expect(await started.locator('.error').isHidden()).toBe(true);
    expect(await started.locator('button[data-action="stop"]').isEnabled()).toBe(true);
    expect(await started.locator('button[data-action="start"]').isDisabled()).toBe(true);
    expect(await page.evaluate('window.notReloaded === true')).toBe(true);
  }, 240_000);

  it('keeps the home page counts live', async () => {
    await page.goto(`${api.url}/`);
    const entry = page.locator('#repos .repo[data-repo="acme/shop"]');
    await entry.locator('.total', { hasText: '1 build' }).waitFor();
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.evaluate('window.notReloaded = true');
    const delivery = await deliver(
      `${api.url}/webhooks/github`,
      'push',
      pushPayload({ repo: 'Acme/Shop', branch: '16.0', after: randomBytes(20).toString('hex') }),
      SECRET,
    );
    expect(delivery.status).toBe(202);
    await entry.locator('.total', { hasText: '2 builds' }).waitFor({ timeout: 30_000 });
    expect(await entry.locator('.count.status-started').textContent()).toBe('started1');
    await page.fill('#filter', 'no-such-repo');
    expect(await entry.isHidden()).toBe(true);
    await page.fill('#filter', 'shop');
    expect(await entry.isVisible()).toBe(true);
    expect(await page.evaluate('window.notReloaded === true')).toBe(true);
  }, 120_000);

  it('adds a row for a new pull request, and sends a live visit to the started build', async () => {
    await page.goto(`${api.url}/repos/acme/shop`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    const prSha = randomBytes(20).toString('hex');
    const prName = buildName({ repo: 'acme/shop', targetBranch: 'main', pr: 7, gitCommit: prSha });
    const delivery = await deliver(
      `${api.url}/webhooks/github`,
      'pull_request',
      pullRequestPayload({ repo: 'Acme/Shop', number: 7, baseRef: 'main', headSha: prSha }),
      SECRET,
    );
    expect(delivery).toMatchObject({ status: 202, body: { build: prName } });
    await page.locator(`#pr-rows .row[data-key="7"] ${card(prName)}`).waitFor({ timeout: 30_000 });
    expect(await page.locator('#pr-rows .row[data-key="7"] .row-title').textContent()).toMatch(
      /PR\s*#7\s*into\s*main/,
    );
    await page.locator(`${card(prName)}[data-status="stopped"]`).waitFor({ timeout: 90_000 });

    await page.goto(`${api.url}/builds/${name}`);
    await page.locator(`#build-card ${card(name)}[data-status="started"]`).waitFor();
    expect(await page.locator('[data-field="status"]').textContent()).toBe('started');

    const visit = await fetch(`${api.url}/builds/${name}?live`, { redirect: 'manual' });
    expect(visit.status).toBe(302);
    expect(visit.headers.get('location')).toMatch(
      /^https:\/\/acme-shop-main-[0-9a-f]{12}\.runboat\.test/,
    );
  }, 180_000);

  it('shows why a build failed, and why an action was refused', async () => {
    await page.goto(`${api.url}/repos/acme/broken`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    const sha = randomBytes(20).toString('hex');
    const failed = buildName({
      repo: 'acme/broken',
      targetBranch: 'main',
      pr: null,
      gitCommit: sha,
    });
    await deliver(
      `${api.url}/webhooks/github`,
      'push',
      pushPayload({ repo: 'Acme/Broken', branch: 'main', after: sha }),
      SECRET,
    );
    await page.locator(`${card(failed)}[data-status="failed"]`).waitFor({ timeout: 90_000 });
    expect(await page.locator(`${card(failed)} .reason`).textContent()).not.toBe('');
    // A failed card offers no start; forced on, the API's refusal shows on the card.
    const start = page.locator(`${card(failed)} button[data-action="start"]`);
    expect(await start.isDisabled()).toBe(true);
    await page.evaluate(
      `document.querySelector('${card(failed)} button[data-action="start"]').disabled = false`,
    );
    await start.click();
    const error = page.locator(`${card(failed)} .error`);
    await error.waitFor({ state: 'visible', timeout: 30_000 });
    expect(await error.textContent()).toMatch(/failed/);
    expect(await start.isDisabled()).toBe(true);

    await page.goto(`${api.url}/repos/acme/shop`);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }, 180_000);
});
