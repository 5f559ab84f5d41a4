/**
 * Builds under pressure, against the real sandbox: the init limit observed from the cluster, a
 * worker killed mid-init, a Deployment deleted by hand, hostile branch names, long histories.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { BUILD_LABEL, JOB_KIND_LABEL, annotations, type CommitInfo } from '../../domain/build.js';
import { stateQuery, undeployUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import {
  createBuildEnv,
  cycleUntilContinuedAsNew,
  scheduledActivities,
  observeInitJobs,
  type BuildEnv,
  type WorkerProcess,
} from './build-env.js';
import { mergePatch } from '../../lib/kube.js';
import { eventually } from './helpers.js';

const INIT_SLOTS = 3;
let env: BuildEnv;
let worker: WorkerProcess;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/slow',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '3s' } },
          },
        ],
      },
      { repo: 'acme/.*', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
    ],
  });
  worker = await env.startWorker({ RUNBOAT_MAX_INITIALIZING: String(INIT_SLOTS) });
});

afterAll(async () => {
  await env?.close();
});

async function initJobsOf(name: string): Promise<string[]> {
  const jobs = await env.kube.batch.listNamespacedJob({
    namespace: env.namespace,
    labelSelector: `${BUILD_LABEL}=${name},${JOB_KIND_LABEL}=initialize`,
  });
  return jobs.items.map((job) => job.metadata?.name ?? '').sort();
}

describe('builds under pressure', () => {
  it(`never run more than ${INIT_SLOTS} init Jobs at once, and all 12 end stopped`, async () => {
    const observer = await observeInitJobs(env);
    try {
      const commits = Array.from({ length: 12 }, (_, i) => env.commit('acme/slow', `b${i}`));
      await Promise.all(commits.map((commit) => env.build(commit)));
      for (const commit of commits) await env.waitForStatus(buildName(commit), 'stopped', 120_000);
      expect(observer.peak).toBe(INIT_SLOTS);
      expect(observer.created.size).toBe(12);
    } finally {
      observer.stop();
    }
  });

  it('survives a worker killed with SIGKILL mid-init: no duplicate Job, every build ends', async () => {
    const observer = await observeInitJobs(env);
    try {
      const commits = Array.from({ length: 5 }, (_, i) => env.commit('acme/slow', `kill-${i}`));
      await Promise.all(commits.map((commit) => env.build(commit)));
      await eventually(async () => expect(observer.created.size).toBeGreaterThanOrEqual(2));
      expect(await worker.stop('SIGKILL')).toBe('SIGKILL');
      worker = await env.startWorker({ RUNBOAT_MAX_INITIALIZING: String(INIT_SLOTS) });
      for (const commit of commits) await env.waitForStatus(buildName(commit), 'stopped', 120_000);
      for (const commit of commits) {
        const name = buildName(commit);
        expect(await initJobsOf(name)).toEqual([`${name}-init-1`]);
        expect(observer.created.get(`${name}-init-1`)).toBe(1);
      }
    } finally {
      observer.stop();
    }
  });

  it('still runs the cleanup Job when the Deployment is deleted with kubectl', async () => {
    const commit = env.commit('acme/shop', 'kubectl-delete');
    const name = buildName(commit);
    const handle = await env.build(commit);
    await env.waitForStatus(name, 'stopped');
    const sandbox = inject('sandbox');
    const kubectl = spawnSync(
      sandbox.kubectl,
      [
        '--kubeconfig',
        sandbox.kube.kubeconfig,
        '--context',
        sandbox.kube.context,
        '-n',
        env.namespace,
        'delete',
        'deployment',
        name,
        '--wait=false',
      ],
      { encoding: 'utf8' },
    );
    expect(kubectl.stdout).toContain(`deployment.apps "${name}" deleted`);
    const final = await handle.result();
    expect(final.status).toBe('undeploying');
    const activities = await scheduledActivities(handle);
    expect(activities).toContain('cleanup');
    expect(await env.deployment(name)).toBeUndefined();
    const leftovers = await env.kube.core.listNamespacedConfigMap({
      namespace: env.namespace,
      labelSelector: `${BUILD_LABEL}=${name}`,
    });
    expect(leftovers.items).toEqual([]);
  });

  it('cleans up a build whose Deployment was deleted with its finalizer stripped by hand', async () => {
    const commit = env.commit('acme/shop', 'forced-delete');
    const name = buildName(commit);
    const handle = await env.build(commit);
    await env.waitForStatus(name, 'stopped');
    await env.kube.apps.patchNamespacedDeployment(
      { name, namespace: env.namespace, body: { metadata: { finalizers: null } } },
      mergePatch,
    );
    await env.kube.apps.deleteNamespacedDeployment({ name, namespace: env.namespace });
    await handle.result();
    const activities = await scheduledActivities(handle);
    expect(activities).toContain('cleanup');
    const leftovers = await env.kube.core.listNamespacedConfigMap({
      namespace: env.namespace,
      labelSelector: `${BUILD_LABEL}=${name}`,
    });
    expect(leftovers.items).toEqual([]);
  });

  it('ends failed, with the reason, when its init Job is deleted while it runs', async () => {
    const commit = env.commit('acme/slow', 'job-deleted');
    const name = buildName(commit);
    await env.build(commit);
    await env.waitForStatus(name, 'initializing');
    await eventually(async () => expect(await initJobsOf(name)).toEqual([`${name}-init-1`]));
    await env.kube.batch.deleteNamespacedJob({
      name: `${name}-init-1`,
      namespace: env.namespace,
      propagationPolicy: 'Background',
    });
    const failed = await env.waitForStatus(name, 'failed');
    expect(failed.metadata?.annotations?.[annotations.failureReason]).toBe(
      'Job deleted before it ended',
    );
  });

  it('converges when scaled by hand with kubectl: taken as a start, then a stop', async () => {
    const commit = env.commit('acme/shop', 'kubectl-scale');
    const name = buildName(commit);
    const handle = await env.build(commit);
    await env.waitForStatus(name, 'stopped');
    const sandbox = inject('sandbox');
    const kubectl = (...args: string[]) =>
      spawnSync(
        sandbox.kubectl,
        [
          '--kubeconfig',
          sandbox.kube.kubeconfig,
          '--context',
          sandbox.kube.context,
          '-n',
          env.namespace,
          ...args,
        ],
        { encoding: 'utf8' },
      );
    expect(kubectl('scale', `deployment/${name}`, '--replicas=1').status).toBe(0);
    const started = await env.waitForStatus(name, 'started');
    expect(started.metadata?.annotations?.[annotations.lastScaled]).toBeTruthy();
    await eventually(async () => expect((await handle.query(stateQuery)).status).toBe('started'));
    expect(kubectl('scale', `deployment/${name}`, '--replicas=0').status).toBe(0);
    await env.waitForStatus(name, 'stopped');
    await eventually(async () => expect((await handle.query(stateQuery)).status).toBe('stopped'));
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
  });

  it('deploys a build whose branch name is hostile, keeping the name verbatim', async () => {
    const branch = `feat: "x'\n- {{ y }} #z/ünïcødé/${'x'.repeat(200)}`;
    const commit: CommitInfo = env.commit('acme/shop', branch, 12);
    const name = buildName(commit);
    const handle = await env.build(commit);
    const deployed = await env.waitForStatus(name, 'stopped');
    expect(deployed.metadata?.annotations?.[annotations.targetBranch]).toBe(branch);
    const ingress = await env.kube.networking.readNamespacedIngress({
      name,
      namespace: env.namespace,
    });
    const host = ingress.spec?.rules?.[0]?.host ?? '';
    for (const label of host.split('.')) {
      expect(label).toMatch(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);
    }
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
  });

  it('takes an undeploy asked while it continues as new (its last commit status slow)', async () => {
    const commit = env.commit('acme/shop', 'undeploy-at-rollover');
    const name = buildName(commit);
    // The statuses take 2 s each: once stopped, past its limit of 10 events, the build waits
    // for them to go out before it continues as new, and the undeploy comes meanwhile.
    env.github.statusDelays.set(commit.gitCommit, 2000);
    const handle = await env.build(commit, 10);
    await env.waitForStatus(name, 'stopped');
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
    expect(await env.deployment(name)).toBeUndefined();
  });

  it('continues as new on a long history and keeps serving with its state', async () => {
    const commit = env.commit('acme/shop', 'long-lived');
    const name = buildName(commit);
    const handle = await env.build(commit, 60);
    await env.waitForStatus(name, 'stopped');
    // Start and stop until the history passes 60 events and the workflow continues as new.
    const later = await cycleUntilContinuedAsNew(env, handle, name);
    expect(later.historyLength).toBeLessThan(60);
    const state = await handle.query(stateQuery);
    expect(state).toMatchObject({ status: 'stopped', initStatus: 'succeeded', initGeneration: 1 });
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
    expect(await env.deployment(name)).toBeUndefined();
  });
});
