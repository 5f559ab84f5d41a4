/**
 * Failure paths against the real system (real worker and API processes, real Temporal and
 * Kubernetes): refused transitions answer 409, an undeploy shows at once, each cleanup attempt
 * runs a fresh Job, reasons keep their root cause, a build workflow never fails, a reset during
 * init never leaves two init Jobs, and no-ops change nothing.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Watch, type V1Job } from '@kubernetes/client-node';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { annotations, BUILD_LABEL, JOB_KIND_LABEL, type CommitInfo } from '../../domain/build.js';
import { resetUpdate, stateQuery } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { buildSearchAttributeKeys } from '../../domain/search-attributes.js';
import { OUTCOME_LABEL, RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { cleanupFailingUnless, kubefilesWith } from '../../dev/kubefiles-fixtures.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { ensureBuild } from '../../lib/temporal.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const TOKEN = 'failure-paths-admin-token';
const CLEANUP = { attempts: 3, retrySeconds: 1 };
const image = 'ghcr.io/acme/odoo:16.0';

let env: BuildEnv;
let api: WorkerProcess & { url: string };
let worker: WorkerProcess;
let repos: unknown[];

beforeAll(async () => {
  repos = [
    {
      repo: 'acme/cleanfail',
      branch: '.*',
      builds: [{ image, templateVars: { cleanupPodLabels: { [OUTCOME_LABEL]: 'fail' } } }],
    },
    {
      repo: 'acme/slowclean',
      branch: '.*',
      builds: [{ image, templateVars: { cleanupPodAnnotations: { [RUN_FOR_ANNOTATION]: '3s' } } }],
    },
    {
      repo: 'acme/flakyclean',
      branch: '.*',
      builds: [{ image, kubefiles: await cleanupFailingUnless('-cleanup-3$') }],
    },
    {
      repo: 'acme/slowinit',
      branch: '.*',
      builds: [{ image, templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '4s' } } }],
    },
    {
      repo: 'acme/nosecret',
      branch: '.*',
      builds: [{ image, secretEnv: { PGPASSWORD: 'NO_SUCH_VARIABLE_ANYWHERE' } }],
    },
    {
      repo: 'acme/badinit',
      branch: '.*',
      builds: [
        { image, kubefiles: await kubefilesWith('initialize.yaml.njk', () => 'kind: [unclosed\n') },
      ],
    },
    {
      repo: 'acme/baddeploy',
      branch: '.*',
      builds: [
        {
          image,
          kubefiles: await kubefilesWith(
            'deployment.yaml.njk',
            () => 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ buildName }}-pod\n',
          ),
        },
      ],
    },
    testRepos.failing,
    testRepos.acme,
  ];
  env = await createBuildEnv({ repos });
  worker = await env.startWorker({
    RUNBOAT_CLEANUP_ATTEMPTS: String(CLEANUP.attempts),
    RUNBOAT_CLEANUP_RETRY_SECONDS: String(CLEANUP.retrySeconds),
    RUNBOAT_ADOPT_INTERVAL_SECONDS: '1',
  });
  const dir = await mkdtemp(join(tmpdir(), 'runboat-failure-api-'));
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: 'failure-paths-secret',
      RUNBOAT_ADMIN_TOKEN: TOKEN,
      RUNBOAT_CLEANUP_ATTEMPTS: String(CLEANUP.attempts),
      RUNBOAT_CLEANUP_RETRY_SECONDS: String(CLEANUP.retrySeconds),
      RUNBOAT_UPDATE_TIMEOUT_SECONDS: '3',
    },
    join(dir, 'api.log'),
  );
});

afterAll(async () => {
  await api?.stop();
  await env?.close();
});

async function call(method: string, path: string) {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: the assertions on status say enough
  }
  return { status: response.status, json, text };
}

/** Starts a build with the cleanup policy of this file. */
function build(commit: CommitInfo): Promise<WorkflowHandle> {
  return ensureBuild(
    env.client,
    { ...env.temporal, cleanup: CLEANUP },
    { commit, trigger: { kind: 'api' } },
  );
}

async function apiStatus(name: string): Promise<string | undefined> {
  const { status, json } = await call('GET', `/api/v1/builds/${name}`);
  return status === 404 ? undefined : (json.status as string);
}

async function waitForApi(name: string, status: string, timeoutMs = 60_000) {
  return eventually(
    async () => {
      const { json } = await call('GET', `/api/v1/builds/${name}`);
      expect(json.status).toBe(status);
      return json;
    },
    timeoutMs,
    100,
  );
}

/** The workflow's status search attribute, as the Temporal UI finds it. */
async function searchStatus(handle: WorkflowHandle): Promise<unknown> {
  const description = await handle.describe();
  return description.searchAttributes[buildSearchAttributeKeys.status.name]?.[0];
}

/** Records every Job of one kind the cluster shows, and the most of one build that existed. */
async function watchJobs(kind: 'initialize' | 'cleanup') {
  const existing = new Map<string, Set<string>>();
  const seen = new Set<string>();
  let peak = 0;
  const controller = await new Watch(env.kube.config).watch(
    `/apis/batch/v1/namespaces/${env.namespace}/jobs`,
    { labelSelector: `${JOB_KIND_LABEL}=${kind}` },
    (phase, job: V1Job) => {
      const name = job.metadata?.name ?? '';
      const owner = job.metadata?.labels?.[BUILD_LABEL] ?? '';
      const jobs = existing.get(owner) ?? new Set<string>();
      existing.set(owner, jobs);
      if (phase === 'DELETED') jobs.delete(name);
      else {
        jobs.add(name);
        seen.add(name);
      }
      peak = Math.max(peak, jobs.size);
    },
    () => undefined,
  );
  return {
    get peak() {
      return peak;
    },
    seen,
    stop: () => controller.abort(),
  };
}

describe('refused transitions', () => {
  it('answer 409 with the reason; a repeated undeploy answers 202 with what is under way', async () => {
    const commit = env.commit('acme/cleanfail', 'main');
    const name = buildName(commit);
    await build(commit);
    await waitForApi(name, 'stopped');

    const first = await call('DELETE', `/api/v1/builds/${name}`);
    expect(first.status).toBe(202);
    const again = await call('DELETE', `/api/v1/builds/${name}`);
    expect(again.status).toBe(202);
    expect(again.json).toEqual({ undeploying: [name] });
    const start = await call('POST', `/api/v1/builds/${name}/start`);
    expect(start.status).toBe(409);
    expect(start.json.error).toMatch(/being undeployed/);

    await waitForApi(name, 'cleanup-failed', 90_000);
    const reset = await call('POST', `/api/v1/builds/${name}/reset`);
    expect(reset.status).toBe(409);
    expect(reset.json.error).toMatch(/cannot reset build .*: it is cleanup-failed/);
    const stop = await call('POST', `/api/v1/builds/${name}/stop`);
    expect(stop.status).toBe(409);
  });

  it('answer 409 for a start of a failed build, through the API', async () => {
    const commit = env.commit('acme/broken', 'main');
    const name = buildName(commit);
    await build(commit);
    await waitForApi(name, 'failed');
    const start = await call('POST', `/api/v1/builds/${name}/start`);
    expect(start.status).toBe(409);
    expect(start.json.error).toMatch(/cannot start build .*: it is failed/);
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
  });
});

describe('an undeploy', () => {
  it('shows undeploying within a second, everywhere, until the build is gone', async () => {
    const commit = env.commit('acme/slowclean', 'feature/x');
    const name = buildName(commit);
    const handle = await build(commit);
    await waitForApi(name, 'stopped');

    const asked = Date.now();
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    await waitForApi(name, 'undeploying', 1000);
    const shownAfter = Date.now() - asked;
    const deployment = await env.deployment(name);
    expect(deployment?.metadata?.labels?.['runboat/status']).toBe('undeploying');
    expect(await searchStatus(handle)).toBe('undeploying');
    console.log(`undeploying shown ${shownAfter} ms after the DELETE`);

    // Through the whole cleanup (a 3 s Job) nothing but undeploying, then 404.
    const seen = new Set<string>();
    await eventually(
      async () => {
        const status = await apiStatus(name);
        seen.add(status ?? 'gone');
        expect(status).toBeUndefined();
      },
      60_000,
      100,
    );
    expect([...seen]).toEqual(['undeploying', 'gone']);
    await handle.result();
  });
});

describe('cleanup attempts', () => {
  it('run a fresh Job each: failing twice then succeeding ends undeployed', async () => {
    const jobs = await watchJobs('cleanup');
    try {
      const commit = env.commit('acme/flakyclean', 'main');
      const name = buildName(commit);
      const handle = await build(commit);
      await waitForApi(name, 'stopped');
      expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
      await handle.result();
      expect(await env.deployment(name)).toBeUndefined();
      expect([...jobs.seen].filter((job) => job.startsWith(name)).sort()).toEqual([
        `${name}-cleanup-1`,
        `${name}-cleanup-2`,
        `${name}-cleanup-3`,
      ]);
    } finally {
      jobs.stop();
    }
  });

  it('that always fail end cleanup-failed with the reason and log; a later undeploy tries again', async () => {
    const commit = env.commit('acme/cleanfail', 'feature/y');
    const name = buildName(commit);
    const handle = await build(commit);
    await waitForApi(name, 'stopped');
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    const failed = await waitForApi(name, 'cleanup-failed', 90_000);
    expect(failed.failure_reason).toMatch(
      new RegExp(`^CleanupFailed: cleanup Job ${name}-cleanup-${CLEANUP.attempts} failed: `),
    );
    expect((await handle.query(stateQuery)).cleanupGeneration).toBe(CLEANUP.attempts);
    const kept = await env.kube.core.readNamespacedConfigMap({
      name: `${name}-cleanup-log`,
      namespace: env.namespace,
    });
    expect(kept.data?.job).toBe(`${name}-cleanup-${CLEANUP.attempts}`);
    expect(kept.data?.outcome).toBe('failed');
    const log = await call('GET', `/api/v1/builds/${name}/cleanup-log`);
    expect(log.status).toBe(200);
    expect(log.text).toContain(`${name}-cleanup-${CLEANUP.attempts}: failed`);

    expect((await handle.describe()).status.name).toBe('RUNNING');

    // Still failing, a new undeploy runs fresh Jobs and says so.
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    await waitForApi(name, 'undeploying', 1000);
    const again = await waitForApi(name, 'cleanup-failed', 90_000);
    expect(again.failure_reason).toMatch(
      new RegExp(`cleanup Job ${name}-cleanup-${CLEANUP.attempts * 2} failed`),
    );

    // Fixed in the repos file, the next undeploy succeeds.
    await env.writeRepos([
      { repo: 'acme/cleanfail', branch: '.*', builds: [{ image }] },
      ...repos.slice(1),
    ]);
    try {
      expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
      await handle.result();
      expect(await env.deployment(name)).toBeUndefined();
    } finally {
      await env.writeRepos(repos);
    }
  });
});

describe('failure reasons', () => {
  it('name the root cause of an init that throws: invalid kubefiles', async () => {
    const commit = env.commit('acme/badinit', 'main');
    const name = buildName(commit);
    const handle = await build(commit);
    const failed = await waitForApi(name, 'failed');
    expect(failed.failure_reason).toMatch(/^KubefilesInvalid: /);
    expect(failed.failure_reason).not.toMatch(/Activity task failed/);
    expect((await handle.query(stateQuery)).failureReason).toBe(failed.failure_reason);
    await eventually(async () => {
      const statuses = env.github.statusesOf(commit.gitCommit);
      expect(statuses.at(-1)?.state).toBe('failure');
      expect(statuses.at(-1)?.description).toMatch(/^KubefilesInvalid: /);
    });
  });

  /** Runs `body` while a ResourceQuota of the builds' namespace allows `hard`. */
  const underQuota = async (
    name: string,
    hard: Record<string, string>,
    body: () => Promise<void>,
  ) => {
    const quota = `${name}-${Date.now()}`;
    await env.kube.core.createNamespacedResourceQuota({
      namespace: env.namespace,
      body: { metadata: { name: quota }, spec: { hard } },
    });
    try {
      // The quota takes effect once its status is computed.
      await eventually(async () => {
        const read = await env.kube.core.readNamespacedResourceQuota({
          name: quota,
          namespace: env.namespace,
        });
        expect(read.status?.hard).toBeTruthy();
      });
      await body();
    } finally {
      await env.kube.core.deleteNamespacedResourceQuota({ name: quota, namespace: env.namespace });
    }
  };

  it('name the root cause of a refused Job (403: a quota forbids Jobs)', async () => {
    await underQuota('no-jobs', { 'count/jobs.batch': '0' }, async () => {
      const commit = env.commit('acme/shop', 'quota');
      const name = buildName(commit);
      await build(commit);
      const failed = await waitForApi(name, 'failed');
      expect(failed.failure_reason).toMatch(/^KubernetesRejected: .*forbidden.*quota/i);
    });
  });

  it('apply nothing of a deploy Kubernetes refuses one object of (a quota forbids Ingresses)', async () => {
    await underQuota('no-ingresses', { 'count/ingresses.networking.k8s.io': '0' }, async () => {
      const commit = env.commit('acme/shop', 'no-ingress');
      const name = buildName(commit);
      const handle = await build(commit);
      const state = await eventually(async () => {
        const current = await handle.query(stateQuery);
        expect(current.status).toBe('failed');
        return current;
      });
      expect(state.failureReason).toMatch(/^KubernetesRejected: .*forbidden.*quota/i);
      // Every object was tried as a dry run first: the refusal of the Ingresses left none of
      // the others behind.
      const selector = { namespace: env.namespace, labelSelector: `runboat/build=${name}` };
      const left = [
        ...(await env.kube.apps.listNamespacedDeployment(selector)).items,
        ...(await env.kube.core.listNamespacedConfigMap(selector)).items,
        ...(await env.kube.core.listNamespacedSecret(selector)).items,
        ...(await env.kube.core.listNamespacedPersistentVolumeClaim(selector)).items,
        ...(await env.kube.core.listNamespacedService(selector)).items,
      ].map((object) => object.metadata?.name);
      expect(left).toEqual([]);
    });
  });
});

describe('a build workflow', () => {
  it('never fails: a secret missing at deploy shows failed with the reason', async () => {
    const commit = env.commit('acme/nosecret', 'main');
    const handle = await build(commit);
    const state = await eventually(async () => {
      const current = await handle.query(stateQuery);
      expect(current.status).toBe('failed');
      return current;
    });
    expect(state.failureReason).toMatch(/^MissingSecret: .*NO_SUCH_VARIABLE_ANYWHERE/);
    expect(await searchStatus(handle)).toBe('failed');
    expect((await handle.describe()).status.name).toBe('RUNNING');
    await eventually(async () => {
      expect(env.github.statusesOf(commit.gitCommit).at(-1)?.description).toMatch(/MissingSecret/);
    });
  });

  it('never fails: invalid deployment kubefiles show failed; the build can be undeployed', async () => {
    const commit = env.commit('acme/baddeploy', 'main');
    const handle = await build(commit);
    const state = await eventually(async () => {
      const current = await handle.query(stateQuery);
      expect(current.status).toBe('failed');
      return current;
    });
    expect(state.failureReason).toMatch(/^KubefilesInvalid: deploy: /);
    expect((await handle.describe()).status.name).toBe('RUNNING');
    const refused = await handle.executeUpdate(resetUpdate).then(
      () => 'accepted',
      () => 'refused',
    );
    expect(refused).toBe('accepted');
    expect((await handle.query(stateQuery)).status).toBe('failed');
    // No Deployment ever existed: the API still shows it, failed, and undeploys it.
    const name = buildName(commit);
    await waitForApi(name, 'failed');
    const start = await call('POST', `/api/v1/builds/${name}/start`);
    expect(start.status).toBe(409);
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    await handle.result();
    await eventually(async () => expect(await apiStatus(name)).toBeUndefined(), 15_000);
  });

  it('of a repo removed from the repos file still undeploys, adopted or not', async () => {
    const commits = [env.commit('acme/gone', 'main'), env.commit('acme/gone', 'feature/z')];
    const names = commits.map(buildName);
    const handles = await Promise.all(commits.map(build));
    for (const name of names) await waitForApi(name, 'stopped');
    // One of them loses its workflow (as after a Temporal wipe) and is adopted.
    await handles[1]?.terminate('test: lost history');
    await env.writeRepos(repos.filter((entry) => (entry as { repo: string }).repo !== 'acme/.*'));
    try {
      await eventually(async () => {
        const description = await env.client.workflow.getHandle(names[1] ?? '').describe();
        expect(description.status.name).toBe('RUNNING');
      }, 30_000);
      const reset = await call('POST', `/api/v1/builds/${names[0]}/reset`);
      expect(reset.status).toBe(202);
      const failed = await waitForApi(names[0] ?? '', 'failed');
      expect(failed.failure_reason).toMatch(/^UnsupportedRepo: /);

      const bulk = await call('DELETE', '/api/v1/builds?repo=acme/gone');
      expect(bulk.status).toBe(202);
      expect((bulk.json.undeploying as string[]).sort()).toEqual([...names].sort());
      for (const name of names) {
        await eventually(async () => expect(await env.deployment(name)).toBeUndefined(), 60_000);
      }
    } finally {
      await env.writeRepos(repos);
    }
    // The workflows end just after their Deployment is gone; the visibility store follows.
    const runs = (status: string) =>
      env.client.workflow.count(
        `${buildSearchAttributeKeys.repo.name} = 'acme/gone' AND ExecutionStatus = '${status}'`,
      );
    await eventually(async () => expect((await runs('Completed')).count).toBe(2), 15_000);
    expect((await runs('Failed')).count).toBe(0);
  });
});

describe('a reset during init', () => {
  it('never leaves two init Jobs of one build, whenever it comes', async () => {
    const jobs = await watchJobs('initialize');
    try {
      const delays = [0, 300, 1000, 2500];
      const handles = await Promise.all(
        delays.map(async (delay, index) => {
          const commit = env.commit('acme/slowinit', `reset-${index}`);
          const handle = await build(commit);
          await new Promise((resolve) => setTimeout(resolve, delay));
          await handle.executeUpdate(resetUpdate);
          return { handle, name: buildName(commit) };
        }),
      );
      // GitHub slow to take the `initializing` status: the init activity has marked the build
      // but not yet created its Job when the reset comes.
      const slow = env.commit('acme/slowinit', 'reset-before-job');
      env.github.statusDelays.set(slow.gitCommit, 3000);
      const slowHandle = await build(slow);
      await waitForApi(buildName(slow), 'initializing', 30_000);
      await slowHandle.executeUpdate(resetUpdate);
      handles.push({ handle: slowHandle, name: buildName(slow) });

      for (const { name } of handles) await waitForApi(name, 'stopped');
      expect(jobs.peak).toBe(1);
      for (const { handle } of handles) {
        await handle.executeUpdate('undeploy');
      }
    } finally {
      jobs.stop();
    }
  });
});

describe('an init whose workflow is lost', () => {
  it('keeps running: the adopting workflow takes the Job over, one Job in all', async () => {
    const jobs = await watchJobs('initialize');
    try {
      const commit = env.commit('acme/slowinit', 'lost-during-init');
      const name = buildName(commit);
      const handle = await build(commit);
      await eventually(async () => expect(jobs.seen.has(`${name}-init-1`)).toBe(true), 30_000);
      await handle.terminate('test: the workflow is lost during init');
      const stopped = await waitForApi(name, 'stopped', 60_000);
      expect(stopped.failure_reason).toBeNull();
      expect([...jobs.seen].filter((job) => job.startsWith(name))).toEqual([`${name}-init-1`]);
      expect(jobs.peak).toBe(1);
    } finally {
      jobs.stop();
    }
  });
});

describe('no-ops', () => {
  it('change nothing: stop a stopped build, start a started one; times in one format', async () => {
    const commit = env.commit('acme/shop', 'noop');
    const name = buildName(commit);
    await build(commit);
    const stopped = await waitForApi(name, 'stopped');
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    expect(stopped.created).toMatch(iso);

    expect((await call('POST', `/api/v1/builds/${name}/stop`)).status).toBe(202);
    const deployment = await env.deployment(name);
    expect(deployment?.metadata?.annotations?.[annotations.lastScaled]).toBeUndefined();

    expect((await call('POST', `/api/v1/builds/${name}/start`)).status).toBe(202);
    const started = await waitForApi(name, 'started');
    expect(started.last_scaled).toMatch(iso);
    const before = (await env.deployment(name))?.metadata?.annotations?.[annotations.lastScaled];
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await call('POST', `/api/v1/builds/${name}/start`)).status).toBe(202);
    const after = (await env.deployment(name))?.metadata?.annotations?.[annotations.lastScaled];
    expect(after).toBe(before);
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
  });
});

describe('without a worker', () => {
  it('a transition answers 503 with the reason after the update deadline, never hangs', async () => {
    const commit = env.commit('acme/shop', 'no-worker');
    const name = buildName(commit);
    await build(commit);
    await waitForApi(name, 'stopped');
    expect(worker.child.exitCode).toBeNull();
    expect(await worker.stop('SIGTERM')).toBe('0');

    const asked = Date.now();
    const start = await call('POST', `/api/v1/builds/${name}/start`);
    const waited = Date.now() - asked;
    expect(start.status).toBe(503);
    expect(start.json.error).toMatch(/did not answer start within 3 s: is a worker/);
    expect(waited).toBeLessThan(10_000);
    console.log(`503 after ${waited} ms`);
  });
});
