/**
 * The system riding out disruptions on the real sandbox: init capacity shared by two worker
 * processes, and the whole Kubernetes control plane restarted while builds are asked for.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { restartApiServer, startSandbox, type Sandbox } from '../../dev/sandbox.js';
import { deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, observeInitJobs, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/.*',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '2s' } },
          },
        ],
      },
    ],
  });
  // Two processes share the init queue: 2 slots here, 1 in an init-only worker; the global
  // limit is 2 (RUNBOAT_MAX_INITIALIZING of the builds worker, which starts the init slots).
  await env.startWorker({ RUNBOAT_MAX_INITIALIZING: '2' });
  await env.startWorker({ RUNBOAT_MAX_INITIALIZING: '1', RUNBOAT_WORKER_ROLES: 'init' });
});

afterAll(async () => {
  await env?.close();
});

describe('disruptions', () => {
  it('never runs more init Jobs than the global limit (2), though the workers have 2 + 1 slots', async () => {
    const observer = await observeInitJobs(env);
    try {
      const commits = Array.from({ length: 9 }, (_, i) => env.commit('acme/shop', `slots-${i}`));
      await Promise.all(commits.map((commit) => env.build(commit)));
      for (const commit of commits) await env.waitForStatus(buildName(commit), 'stopped', 120_000);
      expect(observer.peak).toBe(2);
    } finally {
      observer.stop();
    }
  });
});

// Restarting the API server would disturb the other test files: this drill gets a sandbox of
// its own.
describe('a Kubernetes API server restart', () => {
  let own: Sandbox;
  let drillEnv: BuildEnv;

  beforeAll(async () => {
    own = await startSandbox({ log: () => undefined });
    drillEnv = await createBuildEnv({
      sandbox: own,
      repos: [{ repo: 'acme/.*', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] }],
    });
    await drillEnv.startWorker();
  });

  afterAll(async () => {
    await drillEnv?.close();
    await own?.stop();
  });

  it(
    'recovers when the Kubernetes API server restarts: a build asked for meanwhile shows up',
    { timeout: 240_000 },
    async () => {
      const secret = 'disruption-secret';
      const api: WorkerProcess & { url: string } = await spawnApi(
        { ...drillEnv.workerEnv, RUNBOAT_API_PORT: '0', RUNBOAT_WEBHOOK_SECRET: secret },
        join(await mkdtemp(join(tmpdir(), 'runboat-disruption-')), 'api.log'),
      );
      try {
        // The webhook arrives while the API server is down: Temporal takes it, Kubernetes waits.
        const after = '1'.repeat(40);
        const during = restartApiServer(own, 4000);
        await new Promise((r) => setTimeout(r, 1500));
        const answer = await deliver(
          `${api.url}/webhooks/github`,
          'push',
          pushPayload({ repo: 'Acme/Shop', branch: 'during-restart', after }),
          secret,
        );
        expect(answer.status).toBe(202);
        await during;
        const name = buildName({
          repo: 'acme/shop',
          targetBranch: 'during-restart',
          pr: null,
          gitCommit: after,
        });
        await drillEnv.waitForStatus(name, 'stopped', 120_000);
        // The API's informer recovered: the build is listed, with its status.
        await eventually(
          async () => {
            const response = await fetch(`${api.url}/api/v1/builds/${name}`);
            expect(response.status).toBe(200);
            expect(((await response.json()) as { status: string }).status).toBe('stopped');
          },
          60_000,
          500,
        );
      } finally {
        await api.stop();
      }
    },
  );
});
