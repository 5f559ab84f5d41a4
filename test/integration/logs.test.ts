/**
 * The build logs through the API, with known content: the sandbox's kwok serves a file of this
 * test as the log of every pod of its namespace (dev/kwok-logs.ts), so the live log, `follow`,
 * and the init log kept after the Job are read for real, through kube-apiserver and kwok's
 * kubelet-like server. Also: the error statuses, and that dropped `follow` clients leave no
 * stream open anywhere.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { appendPodLog, servePodLogs } from '../../dev/kwok-logs.js';
import { OUTCOME_LABEL } from '../../dev/kwok-stages.js';
import { runCommand } from '../../dev/run-command.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, slowInitRepo, testRepos, type BuildEnv } from './build-env.js';
import { eventually, triggerBranch } from './helpers.js';

const TOKEN = 'test-admin-token-logs-0123456789';
let env: BuildEnv;
let api: WorkerProcess & { url: string };
let dir: string;
/** The file kwok serves as the log of every pod of the test's namespace. */
let podLog: string;

/** Init pods of `acme/slow` run 20 s: their build stays initializing meanwhile. */
const slowRepo = slowInitRepo('20s');

/** Cleanup pods of `acme/unclean` fail: its builds end `cleanup-failed` when undeployed. */
const uncleanRepo = {
  repo: 'acme/unclean',
  branch: '.*',
  builds: [
    {
      image: 'ghcr.io/acme/odoo:16.0',
      templateVars: { cleanupPodLabels: { [OUTCOME_LABEL]: 'fail' } },
    },
  ],
};

/** Workflows started by the API (and adopted by the worker) end `cleanup-failed` at once. */
const oneCleanupAttempt = { RUNBOAT_CLEANUP_ATTEMPTS: '1', RUNBOAT_CLEANUP_RETRY_SECONDS: '1' };

/** App pods of `acme/huge` ask for more CPU than any node has: they stay Pending. */
const hugeRepo = {
  repo: 'acme/huge',
  branch: '.*',
  builds: [
    { image: 'ghcr.io/acme/odoo:16.0', templateVars: { resources: { requests: { cpu: '5000' } } } },
  ],
};

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [slowRepo, uncleanRepo, hugeRepo, testRepos.failing, testRepos.acme],
  });
  dir = await mkdtemp(join(tmpdir(), 'runboat-logs-'));
  podLog = join(dir, 'pods.log');
  await servePodLogs(env.kube.config, {
    namespace: env.namespace,
    file: podLog,
    lines: ['logs test: the log every pod of this namespace shows'],
  });
  await env.startWorker(oneCleanupAttempt);
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: 'test-secret',
      RUNBOAT_ADMIN_TOKEN: TOKEN,
      ...oneCleanupAttempt,
    },
    join(dir, 'api.log'),
  );
});

afterAll(async () => {
  await api?.stop();
  await env?.close();
});

async function call(method: string, path: string, options: { auth?: boolean } = {}) {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: options.auth ? { authorization: `Bearer ${TOKEN}` } : {},
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return {
    status: response.status,
    type: response.headers.get('content-type') ?? '',
    json: json as Record<string, unknown> | undefined,
    text,
  };
}

const trigger = (repo: string, branch: string) => triggerBranch(api.url, TOKEN, repo, branch);

async function waitForApiStatus(name: string, status: string): Promise<void> {
  await eventually(async () => {
    expect((await call('GET', `/api/v1/builds/${name}`)).json?.status).toBe(status);
  }, 60_000);
}

/** Lines unique to one test, so that what the API shows can only come from this run. */
function markedLines(label: string, count: number): string[] {
  const mark = randomBytes(4).toString('hex');
  return Array.from({ length: count }, (_, index) => `${label} ${mark} line ${index + 1}`);
}

/** The open log streams the API counts (its gauge on /metrics). */
async function apiOpenStreams(): Promise<number> {
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const value = /^runboat_log_streams_open (\S+)$/m.exec(text)?.[1];
  if (value === undefined) throw new Error('no runboat_log_streams_open on /metrics');
  return Number(value);
}

/** The pod log requests kube-apiserver is serving now (its long-running request gauge). */
async function apiServerOpenLogRequests(): Promise<number> {
  const { kube, kubectl } = inject('sandbox');
  const text = await runCommand(kubectl, [
    '--kubeconfig',
    kube.kubeconfig,
    '--context',
    kube.context,
    'get',
    '--raw',
    '/metrics',
  ]);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_longrunning_requests{')) continue;
    if (!line.includes('resource="pods"') || !line.includes('subresource="log"')) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** A `follow` client: resolves once the log's first bytes arrived; `drop` disconnects it. */
function openFollow(path: string): Promise<{ received: () => string; drop: () => void }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const request = http.get(`${api.url}${path}`, (response) => {
      if (response.statusCode !== 200) {
        reject(new Error(`follow answered ${response.statusCode}`));
        response.resume();
        return;
      }
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        const first = text === '';
        text += chunk;
        if (first) resolve({ received: () => text, drop: () => request.destroy() });
      });
      response.on('error', () => undefined);
    });
    request.on('error', (error) => {
      if (text === '') reject(error);
    });
  });
}

/**
 * A TCP relay to kube-apiserver: an API process given a kubeconfig through it loses Kubernetes
 * when the relay closes, while the sandbox itself keeps running for everyone else.
 */
async function kubeRelay(server: string) {
  const target = new URL(server);
  const sockets = new Set<Socket>();
  const relay: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const address = relay.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `https://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    },
  };
}

describe('build logs', () => {
  let started: string;

  it('keeps the init log of the Job with the pod log kwok served', async () => {
    const lines = markedLines('init', 3);
    await appendPodLog(podLog, lines);
    started = await trigger('acme/shop', 'feature/logs');
    await waitForApiStatus(started, 'stopped');
    const log = await call('GET', `/api/v1/builds/${started}/init-log`);
    expect(log.status).toBe(200);
    expect(log.type).toMatch(/^text\/plain/);
    const [header, ...body] = log.text.split('\n');
    expect(header).toBe(`# ${started}-init-1: succeeded`);
    expect(body).toEqual(expect.arrayContaining(lines));
    // No cleanup ran: its log is the build's state, not an unknown build.
    const cleanup = await call('GET', `/api/v1/builds/${started}/cleanup-log`);
    expect(cleanup).toMatchObject({
      status: 409,
      json: { error: `build ${started} has no cleanup log yet` },
    });
  });

  it('keeps the log of a failed init and of a failed cleanup, readable from the API', async () => {
    const lines = markedLines('failing', 2);
    await appendPodLog(podLog, lines);
    const [broken, unclean] = await Promise.all([
      trigger('acme/broken', 'main'),
      trigger('acme/unclean', 'main'),
    ]);
    await waitForApiStatus(broken, 'failed');
    const initLog = await call('GET', `/api/v1/builds/${broken}/init-log`);
    expect(initLog.status).toBe(200);
    expect(initLog.text).toMatch(new RegExp(`^# ${broken}-init-1: failed \\(BackoffLimitExceeded`));
    expect(initLog.text.split('\n')).toEqual(expect.arrayContaining(lines));

    await waitForApiStatus(unclean, 'stopped');
    expect((await call('DELETE', `/api/v1/builds/${unclean}`, { auth: true })).status).toBe(202);
    await eventually(async () => {
      expect((await call('GET', `/api/v1/builds/${unclean}`)).json?.status).toBe('cleanup-failed');
    }, 90_000);
    const cleanupLog = await call('GET', `/api/v1/builds/${unclean}/cleanup-log`);
    expect(cleanupLog.status).toBe(200);
    expect(cleanupLog.type).toMatch(/^text\/plain/);
    expect(cleanupLog.text).toMatch(new RegExp(`^# ${unclean}-cleanup-\\d+: failed`));
    expect(cleanupLog.text.split('\n')).toEqual(expect.arrayContaining(lines));
  });

  it("serves the running build's log, its tail, and follows what is appended", async () => {
    expect((await call('POST', `/api/v1/builds/${started}/start`, { auth: true })).status).toBe(
      202,
    );
    await waitForApiStatus(started, 'started');
    const lines = markedLines('live', 5);
    await appendPodLog(podLog, lines);
    const tail = await call('GET', `/api/v1/builds/${started}/log?tail=3`);
    expect(tail.status).toBe(200);
    expect(tail.type).toMatch(/^text\/plain/);
    expect(tail.text).toBe(`${lines.slice(2).join('\n')}\n`);
    const whole = await call('GET', `/api/v1/builds/${started}/log`);
    expect(whole.text.startsWith('logs test: the log every pod of this namespace shows\n')).toBe(
      true,
    );
    expect(whole.text.endsWith(`${lines.join('\n')}\n`)).toBe(true);

    const follower = await openFollow(`/api/v1/builds/${started}/log?follow=true&tail=1`);
    try {
      expect(follower.received()).toBe(`${lines[4]}\n`);
      const later = markedLines('followed', 2);
      await appendPodLog(podLog, later);
      await eventually(async () => {
        expect(follower.received()).toBe(`${lines[4]}\n${later.join('\n')}\n`);
      }, 10_000);
    } finally {
      follower.drop();
    }
  });

  // In waves: each open follow holds an inotify instance in kwok (128 per user by default).
  it('100 follow clients opened and dropped, 25 at a time, leave no stream open', async () => {
    const baseline = await apiServerOpenLogRequests();
    for (let wave = 0; wave < 4; wave++) {
      const clients = await Promise.all(
        Array.from({ length: 25 }, () =>
          openFollow(`/api/v1/builds/${started}/log?follow=true&tail=1`),
        ),
      );
      expect(await apiServerOpenLogRequests()).toBe(baseline + 25);
      const counted = await apiOpenStreams().catch((error: unknown) => error);
      for (const client of clients) client.drop();
      // Kubernetes itself is the witness: its long-running pod log requests end with the clients.
      await eventually(async () => expect(await apiServerOpenLogRequests()).toBe(baseline), 10_000);
      expect(counted).toBe(25);
      await eventually(async () => expect(await apiOpenStreams()).toBe(0), 5_000);
    }
  });

  it('answers 502 with the reason when Kubernetes cannot read the pod log', async () => {
    await rename(podLog, `${podLog}.away`);
    try {
      const live = await call('GET', `/api/v1/builds/${started}/log`);
      expect(live.status).toBe(502);
      expect(live.type).toMatch(/^application\/json/);
      expect(live.json?.error).toMatch(/^the log of pod \S+: Kubernetes answered HTTP \d{3}: /);
      expect(live.json?.error).toContain('pods.log');
      const follow = await call('GET', `/api/v1/builds/${started}/log?follow=true`);
      expect(follow.status).toBe(502);
    } finally {
      await rename(`${podLog}.away`, podLog);
    }
    expect((await call('GET', `/api/v1/builds/${started}/log?tail=1`)).status).toBe(200);
  });

  it('answers 409 for a build with no init log yet, 404 for no build', async () => {
    const slow = await trigger('acme/slow', 'main');
    await waitForApiStatus(slow, 'initializing');
    const initLog = await call('GET', `/api/v1/builds/${slow}/init-log`);
    expect(initLog).toMatchObject({
      status: 409,
      json: { error: `build ${slow} has no init log yet` },
    });
    const live = await call('GET', `/api/v1/builds/${slow}/log`);
    expect(live.status).toBe(409);
    for (const path of ['init-log', 'cleanup-log', 'log']) {
      const unknown = await call('GET', `/api/v1/builds/bnope/${path}`);
      expect(unknown).toMatchObject({ status: 404, json: { error: 'no build named bnope' } });
    }
  });

  it('answers 503 with the reason while the pod is not running yet', async () => {
    const huge = await trigger('acme/huge', 'main');
    await waitForApiStatus(huge, 'stopped');
    expect((await call('POST', `/api/v1/builds/${huge}/start`, { auth: true })).status).toBe(202);
    await waitForApiStatus(huge, 'starting');
    const live = await eventually(async () => {
      const answer = await call('GET', `/api/v1/builds/${huge}/log`);
      // Until the ReplicaSet made the pod, there is none; then it stays Pending.
      expect(answer.json?.error).toMatch(/^the pod \S+ of build \S+ is not running yet$/);
      return answer;
    }, 20_000);
    expect(live.status).toBe(503);
  });

  it('answers 503 with the reason when Kubernetes is unreachable', async () => {
    const { kube } = inject('sandbox');
    const relay = await kubeRelay(kube.server);
    const config = new KubeConfig();
    config.loadFromFile(kube.kubeconfig);
    config.setCurrentContext(kube.context);
    const kubeconfig = join(dir, 'relayed-kubeconfig');
    const exported = JSON.parse(config.exportConfig()) as {
      clusters: { cluster: { server: string } }[];
    };
    for (const entry of exported.clusters) entry.cluster.server = relay.url;
    await writeFile(kubeconfig, JSON.stringify(exported));
    const cut = await spawnApi(
      {
        ...env.workerEnv,
        RUNBOAT_KUBECONFIG: kubeconfig,
        RUNBOAT_API_PORT: '0',
        RUNBOAT_WEBHOOK_SECRET: 'test-secret',
      },
      join(dir, 'api-relayed.log'),
    );
    try {
      const through = (path: string) =>
        fetch(`${cut.url}${path}`).then(async (response) => ({
          status: response.status,
          retryAfter: response.headers.get('retry-after'),
          text: await response.text(),
        }));
      expect((await through(`/api/v1/builds/${started}/log?tail=1`)).status).toBe(200);
      await relay.close();
      for (const path of ['log', 'init-log', 'cleanup-log']) {
        const answer = await through(`/api/v1/builds/${started}/${path}`);
        expect(answer.status).toBe(503);
        expect(answer.retryAfter).toBe('5');
        expect((JSON.parse(answer.text) as { error: string }).error).toMatch(
          /Kubernetes API unreachable: /,
        );
      }
    } finally {
      await relay.close().catch(() => undefined);
      await cut.stop();
    }
  });
});
