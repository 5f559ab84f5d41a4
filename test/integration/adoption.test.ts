/**
 * Adoption against the real sandbox, by two watchers at once: builds found in Kubernetes without a
 * workflow get one (one each), in the state their Deployment shows — Deployments written the way
 * the Python runboat writes them, and every build after the Temporal server lost its database.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { BUILD_LABEL, JOB_KIND_LABEL, annotations } from '../../domain/build.js';
import { startUpdate, stateQuery, stopUpdate, undeployUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { restartTemporal } from '../../dev/sandbox.js';
import { mergePatch } from '../../lib/kube.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import {
  createBuildEnv,
  kubefilesWithStartHook,
  localActivitySummaries,
  testRepos,
  type BuildEnv,
} from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      testRepos.failing,
      {
        repo: 'acme/slow',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '15s' } },
          },
        ],
      },
      {
        repo: 'acme/hooked',
        branch: '.*',
        builds: [{ image: 'ghcr.io/acme/odoo:16.0', kubefiles: await kubefilesWithStartHook() }],
      },
      testRepos.acme,
    ],
  });
  await env.startWorker({ RUNBOAT_ADOPT_INTERVAL_SECONDS: '1' });
  // A second watcher (builds role) adopts at the same time: adoption must stay single.
  await env.startWorker({ RUNBOAT_ADOPT_INTERVAL_SECONDS: '1', RUNBOAT_WORKER_ROLES: 'builds' });
});

afterAll(async () => {
  await env?.close();
});

/** A Deployment as the Python runboat leaves it: its names, labels and annotations. */
function pythonRunboatDeployment(name: string, sha: string): V1Deployment {
  return {
    metadata: {
      name,
      labels: { [BUILD_LABEL]: name },
      annotations: {
        [annotations.repo]: 'acme/legacy',
        [annotations.targetBranch]: '15.0',
        [annotations.pr]: '',
        [annotations.gitCommit]: sha,
        [annotations.initStatus]: 'succeeded',
        [annotations.lastScaled]: '2026-01-01T00:00:00+00:00',
      },
      finalizers: ['runboat/cleanup'],
    },
    spec: {
      replicas: 0,
      selector: { matchLabels: { [BUILD_LABEL]: name } },
      template: {
        metadata: { labels: { [BUILD_LABEL]: name } },
        spec: { containers: [{ name: 'odoo', image: 'ghcr.io/oca/odoo:15.0' }] },
      },
    },
  };
}

describe('adoption', () => {
  it('adopts Deployments left by the Python runboat: listed by the API, start and stop work', async () => {
    const names = [1, 2].map(() => `b${randomBytes(16).toString('hex')}`);
    for (const name of names) {
      await env.kube.apps.createNamespacedDeployment({
        namespace: env.namespace,
        body: pythonRunboatDeployment(name, randomBytes(20).toString('hex')),
      });
    }
    const api: WorkerProcess & { url: string } = await spawnApi(
      {
        ...env.workerEnv,
        RUNBOAT_API_PORT: '0',
        RUNBOAT_WEBHOOK_SECRET: 'secret',
        RUNBOAT_PUBLIC_START_STOP: 'true',
      },
      join(await mkdtemp(join(tmpdir(), 'runboat-adopt-')), 'api.log'),
    );
    try {
      for (const name of names) {
        const state = await eventually(() => env.client.workflow.getHandle(name).query(stateQuery));
        expect(state).toMatchObject({ name, status: 'stopped', initStatus: 'succeeded' });
        expect(state.commit).toMatchObject({ repo: 'acme/legacy', targetBranch: '15.0', pr: null });
        // Two adopters raced for it; one workflow run came out.
        await eventually(async () => {
          const runs: string[] = [];
          for await (const run of env.client.workflow.list({ query: `WorkflowId = '${name}'` })) {
            runs.push(run.runId);
          }
          expect(runs).toHaveLength(1);
        });
      }
      const listed = (await (await fetch(`${api.url}/api/v1/builds?repo=acme/legacy`)).json()) as {
        name: string;
        status: string;
      }[];
      expect(listed.map((build) => build.name).sort()).toEqual([...names].sort());
      expect(listed.every((build) => build.status === 'stopped')).toBe(true);

      const [first] = names as [string];
      expect(
        (await fetch(`${api.url}/api/v1/builds/${first}/start`, { method: 'POST' })).status,
      ).toBe(202);
      await env.waitForStatus(first, 'started');
      // Its configuration never resolved (adopted): resolved and scaled in one local activity.
      const firstSteps = await localActivitySummaries(env.client.workflow.getHandle(first));
      expect(firstSteps).toContain('resolve the configuration and scale to 1');
      expect(firstSteps).not.toContain('scale to 1');
      expect(
        (await fetch(`${api.url}/api/v1/builds/${first}/stop`, { method: 'POST' })).status,
      ).toBe(202);
      await env.waitForStatus(first, 'stopped');

      // Scaled by hand (its Deployment never had a status label from the Python runboat): the
      // adopting workflow mirrored one, so the drift is seen and taken as a start.
      const [, second] = names as [string, string];
      await env.kube.apps.patchNamespacedDeployment(
        { name: second, namespace: env.namespace, body: { spec: { replicas: 1 } } },
        mergePatch,
      );
      await env.waitForStatus(second, 'started');
      expect((await env.client.workflow.getHandle(second).query(stateQuery)).status).toBe(
        'started',
      );
    } finally {
      await api.stop();
    }
    for (const name of names) {
      const handle = env.client.workflow.getHandle(name);
      await handle.executeUpdate(undeployUpdate);
      await handle.result();
    }
  });

  it('applies the start hook of an adopted build before it scales it', async () => {
    const commit = env.commit('acme/hooked', 'adopted-hook');
    const name = buildName(commit);
    const handle = await env.build(commit);
    await env.waitForStatus(name, 'stopped');
    const { runId } = await handle.describe();
    await handle.terminate('test: lost history');
    // Adopted: a new run, which holds no configuration yet.
    await eventually(async () => {
      const adopted = await env.client.workflow.getHandle(name).describe();
      expect(adopted.runId).not.toBe(runId);
      expect(adopted.status.name).toBe('RUNNING');
    }, 30_000);
    const adopted = env.client.workflow.getHandle(name);
    await eventually(async () => expect((await adopted.query(stateQuery)).status).toBe('stopped'));
    await adopted.executeUpdate(startUpdate);
    const hook = await env.kube.core.readNamespacedConfigMap({
      name: `${name}-hook`,
      namespace: env.namespace,
    });
    expect(hook.data).toEqual({ branch: 'adopted-hook' });
    await env.waitForStatus(name, 'started');
    // The configuration came with the first local activity; the scale waited for the hook.
    const steps = await localActivitySummaries(adopted);
    const resolved = steps.indexOf('resolve the configuration and scale to 1');
    expect(resolved).toBeGreaterThanOrEqual(0);
    expect(steps.indexOf('scale to 1')).toBeGreaterThan(resolved);
    await adopted.executeUpdate(undeployUpdate);
    await adopted.result();
  });

  it('adopts every build back after Temporal lost its database: nothing undeployed, no Job twice', async () => {
    const stopped = env.commit('acme/shop', 'stays-stopped');
    const started = env.commit('acme/shop', 'stays-started');
    const failed = env.commit('acme/broken', 'stays-failed');
    const initializing = env.commit('acme/slow', 'mid-init');
    for (const commit of [stopped, started, failed, initializing]) await env.build(commit);
    await env.waitForStatus(buildName(stopped), 'stopped');
    await env.waitForStatus(buildName(failed), 'failed');
    await env.waitForStatus(buildName(started), 'stopped');
    await env.client.workflow.getHandle(buildName(started)).executeUpdate(startUpdate);
    await env.waitForStatus(buildName(started), 'started');
    await env.waitForStatus(buildName(initializing), 'initializing');

    const wiped = Date.now();
    await restartTemporal(inject('sandbox'), { wipe: true });
    const expected: [typeof stopped, string][] = [
      [stopped, 'stopped'],
      [started, 'started'],
      [failed, 'failed'],
      [initializing, 'initializing'],
    ];
    for (const [commit, status] of expected) {
      const name = buildName(commit);
      const state = await eventually(
        () => env.client.workflow.getHandle(name).query(stateQuery),
        90_000,
        500,
      );
      expect([status, 'stopped']).toContain(state.status);
      expect(state.commit).toEqual(commit);
    }
    console.log(`4 builds adopted ${((Date.now() - wiped) / 1000).toFixed(1)} s after the wipe`);

    // The init that was running is adopted, not run again; it ends the build stopped.
    const slow = buildName(initializing);
    await env.waitForStatus(slow, 'stopped', 60_000);
    const jobs = await env.kube.batch.listNamespacedJob({
      namespace: env.namespace,
      labelSelector: `${BUILD_LABEL}=${slow},${JOB_KIND_LABEL}=initialize`,
    });
    expect(jobs.items.map((job) => job.metadata?.name)).toEqual([`${slow}-init-1`]);

    for (const [commit, status] of expected) {
      const deployment = await env.deployment(buildName(commit));
      expect(deployment?.metadata?.deletionTimestamp).toBeUndefined();
      if (status !== 'initializing') {
        expect(deployment?.metadata?.labels?.['runboat/status']).toBe(status);
      }
    }
    // The adopted workflows serve requests as before.
    const handle = env.client.workflow.getHandle(buildName(started));
    await handle.executeUpdate(stopUpdate);
    await env.waitForStatus(buildName(started), 'stopped');
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
    expect(await env.deployment(buildName(started))).toBeUndefined();
  });
});
