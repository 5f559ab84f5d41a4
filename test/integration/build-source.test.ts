/**
 * Builds build their commit (kubefiles/README.md, "Scripts of default/"; docs/kubefiles.md, "Fork
 * safety"): the init Job the default kubefiles render gets the build's repo, commit and pull
 * request as environment variables, the clone token only as a reference to its Secret and only
 * when the build is trusted, and a script's own error line becomes the failure reason. The clone
 * token never shows in an object of a build, an API answer, a page, a log or a workflow history.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1EnvVar, V1Job } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { annotations, BUILD_LABEL, JOB_KIND_LABEL } from '../../domain/build.js';
import { buildName } from '../../domain/names.js';
import { OUTCOME_LABEL } from '../../dev/kwok-stages.js';
import { servePodLogs } from '../../dev/kwok-logs.js';
import { deliver, pullRequestPayload } from '../../dev/webhook-deliveries.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const SECRET = 'build-source-secret';
const ADMIN = 'build-source-admin-token';
/** The clone token, and a secret env value: neither may leak. */
const CLONE_TOKEN = `ghs_${randomBytes(18).toString('hex')}`;
const API_KEY = `key-${randomBytes(12).toString('hex')}`;
const image = 'ghcr.io/acme/odoo:16.0';

let env: BuildEnv;
let worker: WorkerProcess;
let api: WorkerProcess & { url: string };

beforeAll(async () => {
  const secretEnv = { SHOP_API_KEY: 'TEST_SHOP_API_KEY' };
  const cloneToken = { secret: 'private-clone' };
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/private',
        branch: '.*',
        cloneToken,
        builds: [
          {
            image,
            secretEnv: { ...secretEnv, PGPASSWORD: 'TEST_DB_PASSWORD' },
            secretEnvForForks: ['PGPASSWORD'],
            source: { fetch: 'git', addons: ['sale', 'stock'] },
          },
        ],
      },
      {
        repo: 'acme/trusting',
        branch: '.*',
        trustForks: true,
        cloneToken,
        builds: [{ image, secretEnv }],
      },
      {
        repo: 'acme/gone',
        branch: '.*',
        builds: [{ image, templateVars: { initPodLabels: { [OUTCOME_LABEL]: 'fail' } } }],
      },
    ],
  });
  await env.kube.core.createNamespacedSecret({
    namespace: env.namespace,
    body: {
      metadata: { name: 'private-clone' },
      stringData: { token: CLONE_TOKEN },
    },
  });
  // kwok runs no process: every pod of the namespace shows what a failed fetch prints.
  const dir = await mkdtemp(join(tmpdir(), 'runboat-build-source-'));
  await servePodLogs(env.kube.config, {
    namespace: env.namespace,
    file: join(dir, 'pods.log'),
    lines: [
      'runboat: fetching acme/gone at 0000000 (git)',
      'runboat: error: commit 0000000 not found in acme/gone (branch deleted or force-pushed?)',
    ],
  });
  const processEnv = { ...env.workerEnv, TEST_SHOP_API_KEY: API_KEY };
  worker = await env.startWorker({ TEST_SHOP_API_KEY: API_KEY });
  api = await spawnApi(
    {
      ...processEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_ADMIN_TOKEN: ADMIN,
    },
    join(dir, 'api.log'),
  );
});

afterAll(async () => {
  await api?.stop();
  await env?.close();
});

/** Delivers a signed `pull_request opened` and returns the name of its build. */
async function openPullRequest(repo: string, pr: number, headRepo: string) {
  const sha = randomBytes(20).toString('hex');
  const answer = await deliver(
    `${api.url}/webhooks/github`,
    'pull_request',
    pullRequestPayload({ repo, number: pr, headRepo, headSha: sha, baseRef: '16.0' }),
    SECRET,
  );
  expect(answer.status).toBe(202);
  return { name: buildName({ repo, targetBranch: '16.0', pr, gitCommit: sha }), sha };
}

async function initJob(build: string): Promise<V1Job> {
  return eventually(async () => {
    const jobs = await env.kube.batch.listNamespacedJob({
      namespace: env.namespace,
      labelSelector: `${BUILD_LABEL}=${build},${JOB_KIND_LABEL}=initialize`,
    });
    const [job] = jobs.items;
    if (!job) throw new Error(`${build}: no init Job yet`);
    return job;
  }, 60_000);
}

function envOf(job: V1Job): Record<string, V1EnvVar> {
  const container = job.spec?.template.spec?.containers[0];
  return Object.fromEntries((container?.env ?? []).map((variable) => [variable.name, variable]));
}

async function secretEnvOf(build: string): Promise<Record<string, string>> {
  const secret = await env.kube.core.readNamespacedSecret({
    name: `${build}-secret-env`,
    namespace: env.namespace,
  });
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([key, value]) => [
      key,
      Buffer.from(value, 'base64').toString(),
    ]),
  );
}

describe('the init Job of the default kubefiles', () => {
  const builds: Record<string, string> = {};

  it('fetches the pull request commit of a same-repo PR with the clone token and the secret env', async () => {
    const { name, sha } = await openPullRequest('acme/private', 7, 'acme/private');
    builds.same = name;
    const job = await initJob(name);
    const vars = envOf(job);
    expect(job.spec?.template.spec?.containers[0]?.command).toEqual(['sh', '/runboat/init.sh']);
    expect(vars.RUNBOAT_GIT_REPO?.value).toBe('acme/private');
    expect(vars.RUNBOAT_GIT_SHA?.value).toBe(sha);
    expect(vars.RUNBOAT_GIT_PR?.value).toBe('7');
    expect(vars.RUNBOAT_GIT_URL?.value).toBe('https://github.com/acme/private.git');
    expect(vars.RUNBOAT_FETCH?.value).toBe('git');
    expect(vars.RUNBOAT_ADDONS?.value).toBe('sale,stock');
    expect(vars.RUNBOAT_GIT_TOKEN?.valueFrom?.secretKeyRef).toEqual({
      name: 'private-clone',
      key: 'token',
    });
    expect(vars.RUNBOAT_GIT_TOKEN?.value).toBeUndefined();
    expect(await secretEnvOf(name)).toEqual({
      SHOP_API_KEY: API_KEY,
      PGPASSWORD: env.workerEnv.TEST_DB_PASSWORD,
    });
    await env.waitForStatus(name, 'stopped');
  });

  it('gives a PR from a fork neither the clone token nor the secret env (but secretEnvForForks)', async () => {
    const { name } = await openPullRequest('acme/private', 8, 'mallory/private');
    builds.fork = name;
    const vars = envOf(await initJob(name));
    expect(vars.RUNBOAT_GIT_PR?.value).toBe('8');
    expect(vars.RUNBOAT_GIT_TOKEN).toBeUndefined();
    // Only what the repo entry gives forks all the same (secretEnvForForks).
    expect(await secretEnvOf(name)).toEqual({ PGPASSWORD: env.workerEnv.TEST_DB_PASSWORD });
    const deployment = await env.deployment(name);
    expect(deployment?.metadata?.annotations?.[annotations.headRepo]).toBe('mallory/private');
    await env.waitForStatus(name, 'stopped');
  });

  it('gives a PR from a fork both when the repo entry says trustForks', async () => {
    const { name } = await openPullRequest('acme/trusting', 9, 'mallory/trusting');
    builds.trusted = name;
    const vars = envOf(await initJob(name));
    expect(vars.RUNBOAT_GIT_TOKEN?.valueFrom?.secretKeyRef?.name).toBe('private-clone');
    expect(await secretEnvOf(name)).toEqual({ SHOP_API_KEY: API_KEY });
    await env.waitForStatus(name, 'stopped');
  });

  it("shows the script's own error line as the failure reason, with the log", async () => {
    const { name } = await openPullRequest('acme/gone', 3, 'acme/gone');
    await env.waitForStatus(name, 'failed');
    const answer = await fetch(`${api.url}/api/v1/builds/${name}`);
    const view = (await answer.json()) as { failure_reason: string | null };
    expect(view.failure_reason).toMatch(
      /^commit 0000000 not found in acme\/gone \(branch deleted or force-pushed\?\) \(BackoffLimitExceeded/,
    );
    const log = await (await fetch(`${api.url}/api/v1/builds/${name}/init-log`)).text();
    expect(log).toContain('runboat: error: commit 0000000 not found in acme/gone');
  });

  it('never shows the clone token: objects of the builds, API answers, pages, logs, histories', async () => {
    expect(Object.keys(builds)).toHaveLength(3);
    const seen: string[] = [];
    const kinds: [string, string][] = [
      ['apps/v1', 'Deployment'],
      ['apps/v1', 'ReplicaSet'],
      ['v1', 'Pod'],
      ['batch/v1', 'Job'],
      ['v1', 'ConfigMap'],
      ['v1', 'Secret'],
      ['v1', 'Service'],
      ['networking.k8s.io/v1', 'Ingress'],
      ['v1', 'PersistentVolumeClaim'],
    ];
    for (const name of Object.values(builds)) {
      for (const [apiVersion, kind] of kinds) {
        const list = await env.kube.objects.list(
          apiVersion,
          kind,
          env.namespace,
          undefined,
          undefined,
          undefined,
          undefined,
          `${BUILD_LABEL}=${name}`,
        );
        for (const item of list.items) {
          const data = (item as { data?: Record<string, string> }).data ?? {};
          // Secret values are base64: compare decoded too.
          const decoded = Object.values(data).map((v) => Buffer.from(v, 'base64').toString());
          seen.push(JSON.stringify(item), ...decoded);
        }
      }
      const history = await env.client.workflow.getHandle(name).fetchHistory();
      seen.push(JSON.stringify(history));
      for (const path of [
        `/api/v1/builds/${name}`,
        `/api/v1/builds/${name}/init-log`,
        `/builds/${name}`,
      ]) {
        seen.push(await (await fetch(`${api.url}${path}`)).text());
      }
    }
    for (const path of ['/api/v1/builds', '/api/v1/status', '/', '/api/v1/openapi.json']) {
      seen.push(await (await fetch(`${api.url}${path}`)).text());
    }
    seen.push(await readFile(worker.logFile, 'utf8'), await readFile(api.logFile, 'utf8'));
    const leaks = seen.filter((text) => text.includes(CLONE_TOKEN));
    expect(leaks).toEqual([]);
    // The check can see a leak: the token is where it belongs, in the operator's Secret.
    const secret = await env.kube.core.readNamespacedSecret({
      name: 'private-clone',
      namespace: env.namespace,
    });
    expect(Buffer.from(secret.data?.token ?? '', 'base64').toString()).toBe(CLONE_TOKEN);
    expect(seen.length).toBeGreaterThan(30);
  });
});
