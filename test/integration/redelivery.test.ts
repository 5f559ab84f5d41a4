/**
 * Redelivery of the GitHub App's failed webhook deliveries against the real system (API process,
 * worker, Temporal, Kubernetes) and the fake GitHub, which delivers signed events as GitHub does
 * and keeps their record: pushes delivered while the API was down (no connection) or behind a
 * proxy answering 503 are built once the worker asks GitHub to deliver them again; a delivery
 * refused with a 4xx, one already delivered, and one attempted 5 times are never asked again.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedeliveryResult } from '../../activities/redeliver.js';
import { buildName } from '../../domain/names.js';
import { pushPayload } from '../../dev/webhook-deliveries.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { freeLoopbackPort } from '../../worker/health-server.js';
import { redeliveryScheduleId } from '../../worker/poll-schedules.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import type { FakeHookDelivery, FakeHookTarget } from './fake-github.js';
import { eventually } from './helpers.js';

const SECRET = 'redelivery-test-secret';
const REPO = 'acme/redelivered';
const INTERVAL_SECONDS = 3;
const sha = () => randomBytes(20).toString('hex');

let env: BuildEnv;
let dir: string;
let port: number;
let hook: FakeHookTarget;
let api: (WorkerProcess & { url: string }) | undefined;
let appEnv: NodeJS.ProcessEnv;

const startApi = async (name: string) => {
  api = await spawnApi(
    {
      ...env.workerEnv,
      ...appEnv,
      RUNBOAT_API_PORT: String(port),
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_ADMIN_TOKEN: 'redelivery-test-admin-token',
    },
    join(dir, `${name}.log`),
  );
};

/** A push of a new commit to a branch, and the name of its build. */
const push = (branch: string) => {
  const after = sha();
  const name = buildName({ repo: REPO, targetBranch: branch, pr: null, gitCommit: after });
  return { payload: pushPayload({ repo: 'Acme/Redelivered', branch, after }), name };
};

const attemptsOf = (guid: string): FakeHookDelivery[] =>
  env.github.hookDeliveries.filter((d) => d.guid === guid);

/** The pushes of the scenario: what each delivery met before the worker started. */
const down = push('down');
const busy = push('busy');
const badSignature = push('bad-signature');
const delivered = push('delivered');
const exhausted = push('exhausted');
const guids: Record<string, string> = {};

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [{ repo: REPO, branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] }],
  });
  dir = await mkdtemp(join(tmpdir(), 'runboat-redelivery-'));
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyFile = join(dir, 'app.pem');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs1', format: 'pem' }));
  env.github.app = {
    id: '5151',
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    installations: new Map([['acme', 81]]),
  };
  appEnv = { RUNBOAT_GITHUB_APP_ID: '5151', RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE: keyFile };
  port = await freeLoopbackPort();
  hook = { url: `http://127.0.0.1:${port}/webhooks/github`, secret: SECRET };

  // The API is down: nothing listens on its port.
  const refused = await env.github.deliver('push', down.payload, hook);
  guids.down = refused.guid;
  const first = await env.github.deliver('push', delivered.payload, hook);
  guids.delivered = first.guid;
  let last = await env.github.deliver('push', exhausted.payload, hook);
  guids.exhausted = last.guid;
  for (let i = 1; i < 5; i++)
    last = await env.github.deliver('push', exhausted.payload, hook, last.guid);
  // A proxy in front of the API answers 503 (the API restarting, or too many deliveries at once).
  const proxy = createServer((_request, response) => {
    response.writeHead(503, { 'retry-after': '5' }).end('{"error":"busy"}');
  });
  await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
  guids.busy = (await env.github.deliver('push', busy.payload, hook)).guid;
  await new Promise<void>((resolve) => proxy.close(() => resolve()));

  await startApi('api-0');
  // Signed with a secret the API does not know: refused (4xx), which no retry can fix.
  const bad = await env.github.deliver('push', badSignature.payload, { ...hook, secret: 'wrong' });
  guids.badSignature = bad.guid;
  // Delivered again by hand once the API was back: its first failure is no longer a failure.
  await env.github.deliver('push', delivered.payload, hook, guids.delivered);
  expect(env.github.hookDeliveries.map((d) => d.status_code)).toEqual([
    0, 0, 0, 0, 0, 0, 0, 503, 401, 202,
  ]);
}, 120_000);

afterAll(async () => {
  await api?.stop();
  await env?.close();
});

describe('redelivery of the App failed webhook deliveries', () => {
  it('builds at worker start the pushes delivered while the API was down or busy', async () => {
    const start = Date.now();
    await env.startWorker({
      ...appEnv,
      RUNBOAT_GITHUB_REDELIVER_SECONDS: String(INTERVAL_SECONDS),
    });
    const started = Date.now();
    const existed: Record<string, number> = {};
    await eventually(
      async () => {
        for (const { name } of [down, busy]) {
          if (existed[name] === undefined && (await env.deployment(name))) {
            existed[name] = Date.now() - started;
          }
        }
        expect(Object.keys(existed)).toHaveLength(2);
      },
      60_000,
      100,
    );
    console.log(
      `worker start ${started - start} ms; from its start to the build: ` +
        `refused delivery ${existed[down.name]} ms, 503 delivery ${existed[busy.name]} ms`,
    );
    for (const guid of [guids.down, guids.busy]) {
      expect(attemptsOf(guid ?? '').map((d) => [d.status_code, d.redelivery])).toEqual([
        [expect.any(Number), false],
        [202, true],
      ]);
    }
    const schedule = await env.client.schedule
      .getHandle(redeliveryScheduleId(env.temporal.buildsTaskQueue))
      .describe();
    expect(schedule.spec.intervals?.[0]?.every).toBe(INTERVAL_SECONDS * 1000);
    // The delivered one was built by the API itself, the exhausted one never.
    expect(await env.deployment(delivered.name)).toBeDefined();
    expect(await env.deployment(exhausted.name)).toBeUndefined();
  });

  it('asks again, at the interval, a delivery that failed while the worker runs', async () => {
    await api?.stop();
    const late = push('late');
    const failed = await env.github.deliver('push', late.payload, hook);
    expect(failed.status_code).toBe(0);
    const since = Date.now();
    await startApi('api-1');
    await eventually(
      async () => expect(await env.deployment(late.name)).toBeDefined(),
      60_000,
      100,
    );
    const ms = Date.now() - since;
    console.log(`a delivery failed while the worker ran: built ${ms} ms after the API came back`);
    expect(ms).toBeLessThan(INTERVAL_SECONDS * 1000 * 2 + 10_000);
    expect(attemptsOf(failed.guid).at(-1)).toMatchObject({ status_code: 202, redelivery: true });
  });

  it('never asks again a 4xx, a delivery delivered, or one attempted 5 times', async () => {
    // Two more runs of the schedule at least.
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_SECONDS * 1000 * 2 + 1000));
    expect(attemptsOf(guids.badSignature ?? '')).toHaveLength(1);
    expect(attemptsOf(guids.delivered ?? '')).toHaveLength(2);
    expect(attemptsOf(guids.exhausted ?? '')).toHaveLength(5);
    expect(await env.deployment(badSignature.name)).toBeUndefined();
    expect(await env.deployment(exhausted.name)).toBeUndefined();
    // Each delivery asked again once: the redeliveries were all answered 202.
    const redelivered = env.github.hookDeliveries.filter(
      (d) => d.redelivery && d.status_code === 202,
    );
    expect(redelivered.length).toBe(4);

    const results: RedeliveryResult[] = [];
    for await (const run of env.client.workflow.list({
      query: `WorkflowType = 'redeliverWorkflow' AND TaskQueue = '${env.temporal.buildsTaskQueue}' AND ExecutionStatus = 'Completed'`,
    })) {
      results.push(
        (await env.client.workflow
          .getHandle(run.workflowId, run.runId)
          .result()) as RedeliveryResult,
      );
    }
    console.log(
      `redelivery runs: ${results.length}, ms each ${results.map((r) => r.ms).join(', ')}`,
    );
    expect(results.length).toBeGreaterThanOrEqual(3);
    const quiet = results.filter((r) => r.redeliveredCount === 0);
    expect(quiet.length).toBeGreaterThan(0);
    // 6 deliveries: 4 delivered in the end (3 of them redelivered), 2 given up.
    expect(quiet[0]).toMatchObject({ guids: 6, givenUp: 2, delivered: 4, failed: [] });
  });
});
