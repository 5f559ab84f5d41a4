/**
 * The API while its build index is still loading (a start or restart, docs/operations.md, "The
 * API at scale"): it answers at once, health and readiness as ever and everything else 503 with
 * `retry-after`, never an empty or partial list; once loaded, the lists are the builds' JSON.
 */
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { githubWebhook } from '../../api/webhook.js';
import type { BuildView } from '../../domain/build-view.js';
import { signPayload, deletePayload } from '../../dev/webhook-deliveries.js';
import { createLogger } from '../../lib/logger.js';
import { noLogs, serve, stubCommands, viewOf, type Served } from './app-fixture.js';

const builds: BuildView[] = [
  viewOf({ sha: 'c3', created: '2026-01-03T00:00:00.000Z', message: 'café "quoted" \u2028 line' }),
  viewOf({ sha: 'b2', created: '2026-01-02T00:00:00.000Z', branch: 'feature/x' }),
  viewOf({ sha: 'a1', created: '2026-01-01T00:00:00.000Z' }),
];

const index = {
  isSynced: false,
  get: (name: string) => builds.find((b) => b.name === name),
  list: () => builds,
  all: () => builds,
  find: (name: string) => Promise.resolve(builds.find((b) => b.name === name)),
  on: () => index,
  off: () => index,
};
const undeployed: string[] = [];

let served: Served;

beforeAll(async () => {
  const logger = createLogger('silent');
  const commands = stubCommands({
    transition: (name) => {
      undeployed.push(name);
      return Promise.resolve();
    },
  });
  served = await serve(
    createApp({
      index: index as never,
      commands,
      logs: noLogs,
      settings: {
        repos: () => [],
        maxStarted: 2,
        maxDeployed: 10,
        admin: {},
        publicStartStop: false,
      },
      temporalReady: () => Promise.resolve(true),
      logger,
      metrics: new Registry(),
      extra: [githubWebhook({ secret: 'shh', insecure: false, commands, index, logger })],
    }),
  );
});

afterAll(() => served.close());

describe('the API while its build index loads', () => {
  it('answers 503 with retry-after for builds, status and webhooks; health and readiness as ever', async () => {
    for (const path of ['/api/v1/builds', '/api/v1/status', '/api/v1/build-events']) {
      const response = await fetch(`${served.base}${path}`);
      expect(response.status, path).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(await response.json()).toEqual({
        error: 'starting: the build index is loading; try again in a moment',
      });
    }
    // A deleted branch: answered 503 (GitHub redelivers), not 200 with nothing undeployed.
    const body = JSON.stringify(deletePayload({ repo: 'acme/shop', ref: 'main' }));
    const delivery = await fetch(`${served.base}/webhooks/github`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'delete',
        'x-hub-signature-256': signPayload(body, 'shh'),
      },
    });
    expect(delivery.status).toBe(503);
    expect(undeployed).toEqual([]);

    expect((await fetch(`${served.base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${served.base}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ ready: false, cache: false, temporal: true });
    expect((await fetch(`${served.base}/metrics`)).status).toBe(200);
  });

  it('lists the builds as JSON once loaded, a page of them too', async () => {
    index.isSynced = true;
    const response = await fetch(`${served.base}/api/v1/builds`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('x-total-count')).toBe('3');
    expect(await response.json()).toEqual(builds);

    const page = await fetch(`${served.base}/api/v1/builds?per_page=2&page=2`);
    expect(page.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await page.json()).toEqual([builds[2]]);
    const searched = await fetch(`${served.base}/api/v1/builds?q=feature`);
    expect(await searched.json()).toEqual([builds[1]]);
    expect((await fetch(`${served.base}/readyz`)).status).toBe(200);
  });
});
