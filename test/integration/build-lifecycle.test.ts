/**
 * The life of a build against the real sandbox: a real worker process, real Temporal, real
 * Kubernetes controllers, and a fake GitHub receiving commit statuses.
 */
import { readFile } from 'node:fs/promises';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_LABEL, annotations } from '../../domain/build.js';
import {
  INVALID_TRANSITION,
  resetUpdate,
  startUpdate,
  stateQuery,
  stopUpdate,
  undeployUpdate,
} from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import type { WorkerProcess } from '../../dev/worker-process.js';
import {
  createBuildEnv,
  kubefilesWithStartHook,
  scheduledActivities,
  testRepos,
  type BuildEnv,
} from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;
let worker: WorkerProcess;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/hooked',
        branch: '.*',
        builds: [{ image: 'ghcr.io/acme/odoo:16.0', kubefiles: await kubefilesWithStartHook() }],
      },
      testRepos.failing,
      {
        repo: 'acme/slowpoke',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            templateVars: {
              initDeadlineSeconds: 1,
              initPodAnnotations: { [RUN_FOR_ANNOTATION]: '30s' },
            },
          },
        ],
      },
      {
        repo: 'acme/.*',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            env: { ADDONS: 'sale' },
            secretEnv: { PGPASSWORD: 'TEST_DB_PASSWORD' },
          },
        ],
      },
    ],
  });
  worker = await env.startWorker();
});

afterAll(async () => {
  await env?.close();
});

/** Names of every object in the namespace that carries the build label. */
async function objectsOf(name: string): Promise<string[]> {
  const selector = `${BUILD_LABEL}=${name}`;
  const { namespace } = env;
  const [deployments, services, ingresses, configMaps, secrets, pvcs, jobs, pods] =
    await Promise.all([
      env.kube.apps.listNamespacedDeployment({ namespace, labelSelector: selector }),
      env.kube.core.listNamespacedService({ namespace, labelSelector: selector }),
      env.kube.networking.listNamespacedIngress({ namespace, labelSelector: selector }),
      env.kube.core.listNamespacedConfigMap({ namespace, labelSelector: selector }),
      env.kube.core.listNamespacedSecret({ namespace, labelSelector: selector }),
      env.kube.core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector: selector }),
      env.kube.batch.listNamespacedJob({ namespace, labelSelector: selector }),
      env.kube.core.listNamespacedPod({ namespace, labelSelector: selector }),
    ]);
  return [deployments, services, ingresses, configMaps, secrets, pvcs, jobs, pods].flatMap((list) =>
    list.items.map(
      (item: { kind?: string; metadata?: { name?: string } }) =>
        `${item.kind ?? ''}/${item.metadata?.name ?? ''}`,
    ),
  );
}

async function initLog(name: string) {
  const configMap = await env.kube.core.readNamespacedConfigMap({
    name: `${name}-init-log`,
    namespace: env.namespace,
  });
  return configMap.data ?? {};
}

describe('a build', () => {
  it('goes todo → stopped → started → stopped → reset → stopped → undeployed', async () => {
    const commit = env.commit('acme/shop', 'feature/checkout');
    const name = buildName(commit);
    const handle = await env.build(commit);
    expect(handle.workflowId).toBe(name);

    const deployed = await env.waitForStatus(name, 'stopped');
    expect(deployed.spec?.replicas).toBe(0);
    expect(deployed.metadata?.finalizers).toContain('runboat/cleanup');
    expect(deployed.metadata?.annotations?.[annotations.repo]).toBe('acme/shop');
    expect(deployed.metadata?.annotations?.[annotations.targetBranch]).toBe('feature/checkout');
    expect(deployed.metadata?.annotations?.[annotations.initStatus]).toBe('succeeded');
    expect((await initLog(name)).outcome).toBe('succeeded');
    const secret = await env.kube.core.readNamespacedSecret({
      name: `${name}-secret-env`,
      namespace: env.namespace,
    });
    expect(Buffer.from(secret.data?.PGPASSWORD ?? '', 'base64').toString()).toBe(
      'not-a-real-secret',
    );

    const started = await handle.executeUpdate(startUpdate);
    expect(['starting', 'started']).toContain(started.status);
    const running = await env.waitForStatus(name, 'started');
    expect(running.status?.readyReplicas).toBe(1);
    expect(running.metadata?.annotations?.[annotations.lastScaled]).toBeTruthy();
    expect((await handle.query(stateQuery)).status).toBe('started');

    await handle.executeUpdate(stopUpdate);
    await env.waitForStatus(name, 'stopped');

    await handle.executeUpdate(resetUpdate);
    await eventually(async () => {
      const jobs = await env.kube.batch.listNamespacedJob({
        namespace: env.namespace,
        labelSelector: `${BUILD_LABEL}=${name}`,
      });
      expect(jobs.items.map((job) => job.metadata?.name)).toContain(`${name}-init-2`);
    });
    await env.waitForStatus(name, 'stopped');
    expect((await handle.query(stateQuery)).initGeneration).toBe(2);

    const undeployed = await handle.executeUpdate(undeployUpdate);
    expect(undeployed.status).toBe('undeploying');
    await handle.result();
    expect(await env.deployment(name)).toBeUndefined();
    expect(await objectsOf(name)).toEqual([]);
    const activities = await scheduledActivities(handle);
    expect(activities).toContain('cleanup');
    expect(activities.indexOf('cleanup')).toBeLessThan(activities.indexOf('deleteBuildObjects'));

    const statuses = env.github.statusesOf(commit.gitCommit);
    expect(statuses.map((status) => `${status.state}:${status.description}`)).toEqual([
      'pending:queued for initialization',
      'pending:initializing',
      'success:ready: start it from its page',
      'pending:queued for initialization',
      'pending:initializing',
      'success:ready: start it from its page',
    ]);
    expect(statuses.every((status) => status.context === 'runboat/build')).toBe(true);
    expect(statuses[1]?.targetUrl).toBe(`http://runboat.test/builds/${name}`);
    expect(statuses[2]?.targetUrl).toMatch(
      /^https:\/\/acme-shop-feature-checkout-[0-9a-f]{12}\.runboat\.test$/,
    );
  });

  it('ends failed when its init Job fails, with the log kept and a failure status', async () => {
    const commit = env.commit('acme/broken', 'main', 7);
    const name = buildName(commit);
    const handle = await env.build(commit);
    const failed = await env.waitForStatus(name, 'failed');
    expect(failed.metadata?.annotations?.[annotations.failureReason]).toMatch(
      /BackoffLimitExceeded/,
    );
    const log = await initLog(name);
    expect(log.outcome).toBe('failed');
    expect(log.job).toBe(`${name}-init-1`);
    expect(log.log).toBeTruthy();
    // The Deployment mirrors the ending first; the workflow learns it when the activity returns.
    const state = await eventually(async () => {
      const current = await handle.query(stateQuery);
      expect(current.status).toBe('failed');
      return current;
    });
    expect(state.failureReason).toMatch(/BackoffLimitExceeded/);
    await eventually(async () => {
      const states = env.github.statusesOf(commit.gitCommit).map((status) => status.state);
      expect(states).toEqual(['pending', 'pending', 'failure']);
    });
    expect(env.github.statusesOf(commit.gitCommit)[2]?.targetUrl).toBe(
      `http://runboat.test/api/v1/builds/${name}/init-log`,
    );

    const refused = await handle.executeUpdate(startUpdate).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
    const cause = (refused as WorkflowUpdateFailedError).cause as {
      type?: string;
      message: string;
    };
    expect(cause.type).toBe(INVALID_TRANSITION);
    expect(cause.message).toMatch(/cannot start build .* it is failed/);

    await handle.executeUpdate(undeployUpdate);
    await handle.result();
    expect(await objectsOf(name)).toEqual([]);
  });

  it('ends failed with the reason when its init Job passes its deadline', async () => {
    const commit = env.commit('acme/slowpoke', 'main');
    const name = buildName(commit);
    await env.build(commit);
    const failed = await env.waitForStatus(name, 'failed');
    expect(failed.metadata?.annotations?.[annotations.failureReason]).toMatch(/DeadlineExceeded/);
    expect((await initLog(name)).reason).toMatch(/DeadlineExceeded/);
  });

  it("applies its kubefiles' start hook when started", async () => {
    const commit = env.commit('acme/hooked', 'release/1.0');
    const name = buildName(commit);
    const handle = await env.build(commit);
    await env.waitForStatus(name, 'stopped');
    await handle.executeUpdate(startUpdate);
    const hook = await env.kube.core.readNamespacedConfigMap({
      name: `${name}-hook`,
      namespace: env.namespace,
    });
    expect(hook.data).toEqual({ branch: 'release/1.0' });
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
    expect(await objectsOf(name)).toEqual([]);
  });

  it('stops its worker gracefully on SIGTERM', async () => {
    expect(await worker.stop('SIGTERM')).toBe('0');
    expect(await readFile(worker.logFile, 'utf8')).toContain('worker stopped');
  });
});
