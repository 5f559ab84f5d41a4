/**
 * The GitHub webhook against the real system (API process, worker, Temporal, Kubernetes), with
 * payloads signed for real; then 1,000 random and malformed requests that must not break it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import {
  deletePayload,
  deliver,
  pingPayload,
  postDelivery,
  pullRequestPayload,
  pushPayload,
  signPayload,
} from '../../dev/webhook-deliveries.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const SECRET = 'webhook-test-secret';
let env: BuildEnv;
let api: WorkerProcess & { url: string };
let hook: string;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [{ repo: 'acme/widgets', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] }],
  });
  await env.startWorker();
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_ADMIN_TOKEN: 'webhook-test-admin-token',
    },
    join(await mkdtemp(join(tmpdir(), 'runboat-webhook-')), 'api.log'),
  );
  hook = `${api.url}/webhooks/github`;
});

afterAll(async () => {
  await api?.stop();
  await env?.close();
});

async function deployments(): Promise<string[]> {
  const list = await env.kube.apps.listNamespacedDeployment({ namespace: env.namespace });
  return list.items.map((item) => item.metadata?.name ?? '').sort();
}

const sha = () => randomBytes(20).toString('hex');

describe('the GitHub webhook', () => {
  it('builds a pushed branch once however often the delivery comes, and keeps its slashes', async () => {
    const after = sha();
    const payload = pushPayload({ repo: 'Acme/Widgets', branch: 'feature/a/b', after });
    const name = buildName({
      repo: 'acme/widgets',
      targetBranch: 'feature/a/b',
      pr: null,
      gitCommit: after,
    });
    const first = await deliver(hook, 'push', payload, SECRET, 'delivery-1');
    expect(first).toEqual({ status: 202, body: { build: name } });
    const again = await deliver(hook, 'push', payload, SECRET, 'delivery-1');
    expect(again.body).toEqual({ build: name });
    const deployed = await env.waitForStatus(name, 'stopped');
    expect(deployed.metadata?.annotations?.['runboat/target-branch']).toBe('feature/a/b');
    expect((await deployments()).filter((d) => d === name)).toHaveLength(1);

    const deleted = await deliver(
      hook,
      'push',
      pushPayload({ repo: 'Acme/Widgets', branch: 'feature/a/b', deleted: true }),
      SECRET,
    );
    expect(deleted.body).toEqual({ undeployed: [name] });
    await eventually(async () => expect(await deployments()).not.toContain(name), 60_000);
  });

  it('builds pull requests and undeploys them when closed', async () => {
    const headSha = sha();
    const opened = await deliver(
      hook,
      'pull_request',
      pullRequestPayload({
        repo: 'Acme/Widgets',
        action: 'opened',
        number: 7,
        baseRef: '16.0',
        headSha,
      }),
      SECRET,
    );
    const name = buildName({
      repo: 'acme/widgets',
      targetBranch: '16.0',
      pr: 7,
      gitCommit: headSha,
    });
    expect(opened.body).toEqual({ build: name });
    await env.waitForStatus(name, 'stopped');
    const closed = await deliver(
      hook,
      'pull_request',
      pullRequestPayload({
        repo: 'Acme/Widgets',
        action: 'closed',
        number: 7,
        baseRef: '16.0',
        headSha,
      }),
      SECRET,
    );
    expect(closed.body).toEqual({ undeployed: [name] });
    await eventually(async () => expect(await deployments()).not.toContain(name), 60_000);
  });

  it('refuses bad signatures, ignores pings, tags and unsupported repos, creating nothing', async () => {
    const before = await deployments();
    const payload = pushPayload({ repo: 'Acme/Widgets', branch: 'main', after: sha() });
    expect((await deliver(hook, 'push', payload, 'another-secret')).status).toBe(401);
    expect((await deliver(hook, 'push', payload, undefined)).status).toBe(401);
    expect((await deliver(hook, 'ping', pingPayload(), SECRET)).status).toBe(200);
    const tag = await deliver(
      hook,
      'push',
      pushPayload({ repo: 'Acme/Widgets', ref: 'refs/tags/v1' }),
      SECRET,
    );
    expect(tag.status).toBeLessThan(300);
    const other = await deliver(
      hook,
      'push',
      pushPayload({ repo: 'Other/Repo', branch: 'main' }),
      SECRET,
    );
    expect(other.status).toBe(200);
    expect(other.body).toHaveProperty('ignored');
    const branchDelete = await deliver(
      hook,
      'delete',
      deletePayload({ repo: 'Acme/Widgets', ref: 'gone' }),
      SECRET,
    );
    expect(branchDelete.status).toBe(200);
    const malformed = await postDelivery(hook, '{"ref": "refs/heads/main", ', {
      'x-github-event': 'push',
      'x-github-delivery': 'malformed',
      'x-hub-signature-256': signPayload('{"ref": "refs/heads/main", ', SECRET),
      'content-type': 'application/json',
    });
    expect(malformed.status).toBe(400);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await deployments()).toEqual(before);
  });

  it('survives 1,000 random and malformed requests without a 5xx', async () => {
    const paths = [
      '/webhooks/github',
      '/api/v1/builds',
      '/api/v1/builds/x',
      '/api/v1/builds/b/start',
      '/api/v1/status',
      '/api/v1/builds/trigger/branch',
      '/nope',
      '/api/v1/builds/%ZZ',
      '/api/v1/builds?pr=-1&status=%00',
    ];
    const methods = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH'];
    const events = ['push', 'pull_request', 'delete', 'ping', 'issues', '', 'x'.repeat(300)];
    const bodies = [
      '',
      '{',
      '[]',
      'null',
      '{"ref": 42}',
      '{"ref": "refs/heads/\\u0000", "after": "zz", "repository": {"full_name": ["a"]}}',
      JSON.stringify(pushPayload({ repo: 'Acme/Widgets', branch: 'x\n- y: {z}' })),
      JSON.stringify({ pull_request: { number: 'seven' }, action: 'opened', repository: {} }),
      randomBytes(512).toString('latin1'),
      '{"a":'.repeat(200),
    ];
    const pick = <T>(items: readonly T[]): T =>
      items[Math.floor(Math.random() * items.length)] as T;
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1000; i++) {
      const body = pick(bodies);
      const headers: Record<string, string> = {
        'content-type': pick([
          'application/json',
          'text/plain',
          'application/x-www-form-urlencoded',
        ]),
      };
      const event = pick(events);
      if (event) headers['x-github-event'] = event;
      const signing = Math.random();
      if (signing < 0.4) headers['x-hub-signature-256'] = signPayload(body, SECRET);
      else if (signing < 0.7)
        headers['x-hub-signature-256'] = pick([
          'sha256=',
          'sha1=abc',
          'sha256=' + 'f'.repeat(64),
          '',
        ]);
      if (Math.random() < 0.3)
        headers.authorization = pick([
          'Bearer ',
          'Basic ',
          'Basic !!!',
          'Bearer webhook-test-admin-token',
        ]);
      const method = pick(methods);
      const response = await fetch(`${api.url}${pick(paths)}`, {
        method,
        headers,
        body: method === 'GET' ? null : body,
      });
      await response.arrayBuffer();
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      expect(response.status, `request ${i}`).toBeLessThan(500);
    }
    expect([...statuses.keys()].some((status) => status === 401)).toBe(true);
    expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
    const after = sha();
    const stillWorks = await deliver(
      hook,
      'push',
      pushPayload({ repo: 'Acme/Widgets', branch: 'after-fuzz', after }),
      SECRET,
    );
    expect(stillWorks.status).toBe(202);
  });
});
