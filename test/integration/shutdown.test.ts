/**
 * The API's graceful shutdown against the real system (API process, Temporal, Kubernetes): a
 * SIGTERM in the middle of a burst of signed webhook deliveries loses none that was answered 2xx,
 * an open build-events stream does not hold the shutdown, and the process exits 0 within the
 * grace (docs/operations.md, "Shutdown").
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import * as http from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPodLog, servePodLogs } from '../../dev/kwok-logs.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import { BUILD_LABEL, JOB_KIND_LABEL } from '../../domain/build.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const SECRET = 'shutdown-test-secret';
const DELIVERIES = 200;
const CONCURRENCY = 20;
/** Answers before the SIGTERM: the burst is well under way, far from over. */
const SIGNAL_AFTER = 60;
const GRACE_SECONDS = 20;

let env: BuildEnv;
/** The second test's: its queues do not hold the first one's builds. */
let running: BuildEnv | undefined;
let api: WorkerProcess & { url: string };
let dir: string;

beforeAll(async () => {
  // No worker in the first test: a delivery answered 2xx has started its build workflow,
  // whoever runs it later.
  env = await createBuildEnv({
    repos: [{ repo: 'acme/widgets', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] }],
  });
  dir = await mkdtemp(join(tmpdir(), 'runboat-shutdown-'));
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS),
    },
    join(dir, 'api.log'),
  );
  await eventually(async () => expect((await fetch(`${api.url}/readyz`)).status).toBe(200));
});

afterAll(async () => {
  await api?.stop('SIGKILL');
  await env?.close();
  await running?.close();
});

/** How one delivery ended. */
type Outcome = { kind: 'answered'; status: number; build?: string } | { kind: string };

function failureKind(error: unknown): string {
  const cause = (error as { cause?: { code?: string } }).cause;
  return cause?.code === 'ECONNREFUSED' ? 'refused' : `failed: ${cause?.code ?? String(error)}`;
}

/** Opens the build-events stream and resolves `ended` when the server ends it. */
async function openBuildEvents(url: string): Promise<{ ended: Promise<number> }> {
  const response = await fetch(`${url}/api/v1/build-events`);
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  await reader.read();
  const ended = (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      // A reset also ends it; the time is what counts.
    }
    return Date.now();
  })();
  return { ended };
}

/**
 * Starts a request whose last header line is not sent yet: it is arriving, not idle, when the
 * shutdown begins. `finish()` sends the rest and resolves with the raw answer.
 */
async function arrivingRequest(url: string, path: string): Promise<{ finish(): Promise<string> }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(answer)));
  socket.write(`GET ${path} HTTP/1.1\r\nhost: ${hostname}\r\n`);
  return {
    finish() {
      socket.write('\r\n');
      return closed;
    },
  };
}

describe('the API on SIGTERM', () => {
  it('answers the deliveries in flight, each answered one has its build in Temporal, and exits 0 within the grace', async () => {
    const events = await openBuildEvents(api.url);
    const readyz = await arrivingRequest(api.url, '/readyz');
    const outcomes: Outcome[] = [];
    let next = 0;
    let answered = 0;
    let inFlightAtSignal = 0;
    let signalledAt = 0;
    const exited = api.stop.bind(api);
    let exit: Promise<string> | undefined;
    let readyzAnswer: Promise<string> | undefined;
    const hook = `${api.url}/webhooks/github`;

    const sender = async () => {
      while (next < DELIVERIES) {
        const i = next++;
        const payload = pushPayload({
          repo: 'Acme/Widgets',
          branch: `burst/${i}`,
          after: randomBytes(20).toString('hex'),
          created: true,
        });
        try {
          const response = await deliver(hook, 'push', payload, SECRET);
          const build = (response.body as { build?: string }).build;
          outcomes[i] = { kind: 'answered', status: response.status, build };
        } catch (error) {
          outcomes[i] = { kind: failureKind(error) };
        }
        if (++answered === SIGNAL_AFTER) {
          inFlightAtSignal = next - answered;
          signalledAt = Date.now();
          exit = exited('SIGTERM');
          readyzAnswer = new Promise((r) => setTimeout(r, 100)).then(() => readyz.finish());
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, sender));
    expect(exit).toBeDefined();
    const exitCode = await exit!;
    const exitedAt = Date.now();
    const readyzText = await readyzAnswer!;
    const eventsEndedAt = await events.ended;

    const ok = outcomes.filter(
      (o): o is Outcome & { kind: 'answered'; status: number; build?: string } =>
        o.kind === 'answered' && 'status' in o && o.status >= 200 && o.status < 300,
    );
    const other = outcomes.filter((o) => !ok.includes(o as never));
    const tally = new Map<string, number>();
    for (const o of other) {
      const key = 'status' in o ? `status ${o.status}` : o.kind;
      tally.set(key, (tally.get(key) ?? 0) + 1);
    }
    const found = await Promise.all(
      ok.map(async (o) => {
        const description = await env.client.workflow.getHandle(o.build ?? '').describe();
        return description.type === 'buildWorkflow';
      }),
    );
    const log = await readFile(api.logFile, 'utf8');
    const drained = /"inFlight":(\d+),"forced":(\d+),"tookMs":(\d+)[^\n]*"api drained"/.exec(log);
    console.log(
      `shutdown: ${DELIVERIES} deliveries, ${CONCURRENCY} at a time, SIGTERM after ${SIGNAL_AFTER} ` +
        `answers with ${inFlightAtSignal} in flight; answered 2xx ${ok.length}, ` +
        `${[...tally].map(([k, n]) => `${k} ${n}`).join(', ') || 'nothing else'}; ` +
        `workflows found ${found.filter(Boolean).length}/${ok.length}; ` +
        `server drained ${drained?.[1]} in flight in ${drained?.[3]} ms (forced ${drained?.[2]}); ` +
        `exit ${exitCode} after ${exitedAt - signalledAt} ms; ` +
        `build events ended after ${eventsEndedAt - signalledAt} ms`,
    );

    expect(exitCode).toBe('0');
    expect(exitedAt - signalledAt).toBeLessThan(GRACE_SECONDS * 1000);
    // Ended by the shutdown, not cut at the deadline.
    expect(drained?.[2]).toBe('0');
    expect(eventsEndedAt - signalledAt).toBeLessThan(GRACE_SECONDS * 1000);
    expect(ok.length).toBeGreaterThanOrEqual(SIGNAL_AFTER);
    expect(ok.length).toBeLessThan(DELIVERIES);
    // Every delivery answered 2xx reached Temporal: GitHub will not send it again.
    expect(found.every(Boolean)).toBe(true);
    // Whatever was not answered 2xx failed to connect or was cut unanswered: none got an error.
    expect(other.filter((o) => 'status' in o)).toEqual([]);
    // A request arriving as the shutdown began is answered, and tells a load balancer to go.
    expect(readyzText).toMatch(/^HTTP\/1\.1 503 /);
    expect(readyzText).toMatch(/"stopping":true/);
    expect(readyzText.toLowerCase()).toContain('connection: close');
  });
});

/** Follows a log over HTTP: resolves once its first bytes arrived, `ended` when the server ends it. */
function follow(url: string): Promise<{ ended: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, (response) => {
      if (response.statusCode !== 200) {
        reject(new Error(`follow answered ${response.statusCode}`));
        response.resume();
        return;
      }
      const ended = new Promise<number>((r) => {
        response.once('end', () => r(Date.now()));
        response.once('error', () => r(Date.now()));
      });
      response.once('data', () => resolve({ ended }));
      response.resume();
    });
    request.on('error', reject);
  });
}

describe('on SIGTERM, with builds running', () => {
  it('the API ends a followed log at once, and a worker with an init in flight logs the signal, exits 0 and its init is adopted, not started twice', async () => {
    const env = (running = await createBuildEnv({
      repos: [
        // Init pods of `acme/slow` run 20 s: a worker stopped meanwhile has an init in flight.
        {
          repo: 'acme/slow',
          branch: '.*',
          builds: [
            {
              image: 'ghcr.io/acme/odoo:16.0',
              templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '20s' } },
            },
          ],
        },
        { repo: 'acme/widgets', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
      ],
    }));
    const podLog = join(dir, 'pods.log');
    await servePodLogs(env.kube.config, {
      namespace: env.namespace,
      file: podLog,
      lines: ['shutdown test: the log of every pod'],
    });
    const worker = await env.startWorker();
    const second = await spawnApi(
      {
        ...env.workerEnv,
        RUNBOAT_API_PORT: '0',
        RUNBOAT_WEBHOOK_SECRET: SECRET,
        RUNBOAT_PUBLIC_START_STOP: 'true',
      },
      join(dir, 'api-2.log'),
    );
    const name = (await env.build(env.commit('acme/widgets', 'followed'))).workflowId;
    await env.waitForStatus(name, 'stopped');
    await eventually(async () => {
      const response = await fetch(`${second.url}/api/v1/builds/${name}/start`, { method: 'POST' });
      expect(response.status).toBe(202);
    });
    await env.waitForStatus(name, 'started');
    const followed = await eventually(() =>
      follow(`${second.url}/api/v1/builds/${name}/log?follow=true&tail=1`),
    );
    await appendPodLog(podLog, ['a line the follower reads']);

    const apiSignalledAt = Date.now();
    const apiExit = await second.stop('SIGTERM');
    const apiExitMs = Date.now() - apiSignalledAt;
    const followEndedMs = (await followed.ended) - apiSignalledAt;
    const apiLog = await readFile(second.logFile, 'utf8');

    // A build whose init runs 20 s: the worker is stopped while its init activity waits.
    const slow = (await env.build(env.commit('acme/slow', 'main'))).workflowId;
    await env.waitForStatus(slow, 'initializing');
    await new Promise((r) => setTimeout(r, 2000));
    const workerSignalledAt = Date.now();
    const workerExit = await worker.stop('SIGTERM');
    const workerExitMs = Date.now() - workerSignalledAt;
    const workerLog = await readFile(worker.logFile, 'utf8');
    await env.startWorker();
    await env.waitForStatus(slow, 'stopped', 120_000);
    const initJobs = await env.kube.batch.listNamespacedJob({
      namespace: env.namespace,
      labelSelector: `${BUILD_LABEL}=${slow},${JOB_KIND_LABEL}=initialize`,
    });
    console.log(
      `shutdown with builds running: API exit ${apiExit} after ${apiExitMs} ms, its followed ` +
        `log ended after ${followEndedMs} ms; worker with an init in flight exit ${workerExit} ` +
        `after ${workerExitMs} ms; the build reached stopped on the next worker with ` +
        `${initJobs.items.length} init Job(s)`,
    );

    expect(apiExit).toBe('0');
    expect(followEndedMs).toBeLessThan(5000);
    expect(apiExitMs).toBeLessThan(GRACE_SECONDS * 1000);
    expect(apiLog).toMatch(/"forced":0[^\n]*"api drained"/);
    expect(workerExit).toBe('0');
    expect(workerLog).toMatch(/"signal":"SIGTERM"[^\n]*"msg":"worker stopping"/);
    expect(workerLog).toMatch(/"msg":"worker stopped"/);
    expect(initJobs.items).toHaveLength(1);
  });
});
