/**
 * The API's /metrics as Prometheus reads it, from the real application (createApp with the real
 * webhook and UI middleware) over real HTTP: every route, the webhook and static files included,
 * carries its pattern as a label, and the workers polling each task queue are a gauge.
 */
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { webUi } from '../../api/ui.js';
import { githubWebhook } from '../../api/webhook.js';
import { registerWorkerMetrics } from '../../api/worker-metrics.js';
import type { WorkerStatus } from '../../api/worker-status.js';
import { createLogger } from '../../lib/logger.js';
import { noLogs, serve, stubCommands, type Served } from './app-fixture.js';

let status: WorkerStatus = {
  temporal_reachable: true,
  queues: [],
  warnings: [],
  checked_at: '2024-05-01T10:00:00.000Z',
};
let served: Served;
let base: string;

const index = {
  get: () => undefined,
  list: () => [],
  all: () => [],
  find: () => Promise.resolve(undefined),
  on: () => index,
  off: () => index,
  isSynced: true,
};
const commands = stubCommands({ transition: () => Promise.reject(new Error('not in this test')) });

beforeAll(async () => {
  const logger = createLogger('silent');
  const metrics = new Registry();
  const workers = () => Promise.resolve(status);
  registerWorkerMetrics(metrics, workers);
  const app = createApp({
    index: index as never,
    commands,
    logs: noLogs,
    settings: { repos: () => [], maxStarted: 2, maxDeployed: 10, admin: {}, publicStartStop: true },
    temporalReady: () => Promise.resolve(true),
    workers,
    logger,
    metrics,
    extra: [
      githubWebhook({ secret: 'shh', insecure: false, commands, index, logger }),
      webUi({
        index,
        commands,
        workers,
        // A configured repo without builds has its page (an unconfigured one is a 404).
        repos: () => [{ repo: 'acme/.*', branch: '.*', sticky: false }],
        publicStartStop: true,
        logger,
      }),
    ],
  });
  served = await serve(app);
  base = served.base;
});

afterAll(() => served.close());

const metricsText = async () => (await fetch(`${base}/metrics`)).text();

describe('API metrics', () => {
  it('labels the webhook, static files and UI pages by route, never by raw path', async () => {
    const unsigned = await fetch(`${base}/webhooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'ping' },
      body: '{}',
    });
    expect(unsigned.status).toBe(401);
    expect((await fetch(`${base}/static/app.js`)).status).toBe(200);
    expect((await fetch(`${base}/static/nothing-here.js`)).status).toBe(404);
    expect((await fetch(`${base}/repos/acme/shop`)).status).toBe(200);
    expect((await fetch(`${base}/builds/bnothere`)).status).toBe(404);
    expect((await fetch(`${base}/`)).status).toBe(200);
    expect((await fetch(`${base}/no/such/page`)).status).toBe(404);

    const text = await metricsText();
    const requests = (route: string, status: number, method = 'GET') =>
      `runboat_http_requests_total{method="${method}",route="${route}",status="${status}"} 1`;
    expect(text).toContain(requests('/webhooks/github', 401, 'POST'));
    expect(text).toContain(requests('/static/*', 200));
    expect(text).toContain(requests('/static/*', 404));
    expect(text).toContain(requests('/repos/:owner/:repo', 200));
    expect(text).toContain(requests('/builds/:name', 404));
    expect(text).toContain(requests('/', 200));
    expect(text).toContain(requests('unmatched', 404));
    expect(text).not.toMatch(/route="\/(static\/app\.js|repos\/acme|builds\/bnothere)/);
  });

  it('counts the workers polling each task queue, and whether Temporal answers', async () => {
    const at = '2024-05-01T10:00:00.000Z';
    status = {
      temporal_reachable: true,
      queues: [
        {
          role: 'builds',
          task_queue: 'runboat-builds',
          polling: true,
          pollers: [
            { identity: 'w1', last_access_time: at },
            { identity: 'w2', last_access_time: at },
          ],
        },
        { role: 'init', task_queue: 'runboat-init', polling: false, pollers: [] },
      ],
      warnings: [],
      checked_at: at,
    };
    let text = await metricsText();
    expect(text).toContain('runboat_task_queue_pollers{role="builds",queue="runboat-builds"} 2');
    expect(text).toContain('runboat_task_queue_pollers{role="init",queue="runboat-init"} 0');
    expect(text).toContain('runboat_temporal_reachable 1');

    // Temporal silent: no poller count is a guess, and reachability says why.
    status = {
      temporal_reachable: false,
      error: 'deadline exceeded',
      queues: status.queues.map((queue) => ({ ...queue, polling: null, pollers: [] })),
      warnings: [],
      checked_at: at,
    };
    text = await metricsText();
    expect(text).not.toContain('runboat_task_queue_pollers{');
    expect(text).toContain('runboat_temporal_reachable 0');
  });
});
