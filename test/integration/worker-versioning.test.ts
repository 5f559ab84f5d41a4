/**
 * Worker versioning against the real Temporal server (docs/upgrades.md): a worker started with
 * `RUNBOAT_WORKER_VERSIONING=true` registers its Worker Deployment Version; once an operator made
 * that version current, builds run on it with the auto-upgrade behaviour, and move to the next
 * version once that one is made current.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpdate, undeployUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { createBuildEnv, testRepos, type BuildEnv, type WorkerProcess } from './build-env.js';
import { eventually } from './helpers.js';

const suffix = randomBytes(3).toString('hex');
// Deployments are namespace-wide: a name of this test's own.
const deploymentName = `runboat-test-${suffix}`;
const buildId = `1.0.0-${suffix}`;

let env: BuildEnv;
let workerA: WorkerProcess | undefined;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  workerA = await env.startWorker({
    RUNBOAT_WORKER_VERSIONING: 'true',
    RUNBOAT_DEPLOYMENT_NAME: deploymentName,
    RUNBOAT_BUILD_ID: buildId,
  });
});

afterAll(async () => {
  await env?.close();
});

function describeDeployment() {
  return env.client.workflowService.describeWorkerDeployment({
    namespace: env.temporal.namespace,
    deploymentName,
  });
}

/**
 * What an operator does (`temporal worker deployment set-current-version`). Temporal refuses
 * (FAILED_PRECONDITION) until the version has polled every task queue of the current one.
 */
function promote(version: string) {
  return eventually(
    () =>
      env.client.workflowService.setWorkerDeploymentCurrentVersion({
        namespace: env.temporal.namespace,
        deploymentName,
        buildId: version,
        identity: 'worker-versioning test',
      }),
    30_000,
    500,
  );
}

describe('a worker with versioning on', () => {
  it('registers its version, runs nothing until it is current, then runs builds on it', async () => {
    const registered = Date.now();
    const described = await eventually(async () => {
      const answer = await describeDeployment();
      const builds = answer.workerDeploymentInfo?.versionSummaries?.map(
        (summary) => summary.deploymentVersion?.buildId,
      );
      expect(builds).toContain(buildId);
      return answer;
    }, 30_000);
    console.log(`version ${deploymentName}.${buildId} registered in ${Date.now() - registered} ms`);
    // No version is current yet.
    expect(
      described.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId ?? '',
    ).toBe('');

    const commit = env.commit('acme/shop', 'versioned');
    const name = buildName(commit);
    const handle = await env.build(commit);
    // Before any version is current, the versioned worker is given no task: nothing happens.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect(await env.deployment(name)).toBeUndefined();
    const pending = await handle.describe();
    expect(pending.raw.workflowExecutionInfo?.historyLength?.toString()).toBe('2');

    const promoted = Date.now();
    await promote(buildId);
    await env.waitForStatus(name, 'stopped', 60_000);
    console.log(`build stopped ${Date.now() - promoted} ms after the version was made current`);
    const current = await describeDeployment();
    expect(current.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId).toBe(
      buildId,
    );

    const info = (await handle.describe()).raw.workflowExecutionInfo;
    expect(info?.versioningInfo?.deploymentVersion).toMatchObject({ deploymentName, buildId });
    // 1: VERSIONING_BEHAVIOR_PINNED, 2: VERSIONING_BEHAVIOR_AUTO_UPGRADE.
    expect(info?.versioningInfo?.behavior).toBe(2);
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
  });

  it('moves a running build to the next version once it is current (auto-upgrade)', async () => {
    const commit = env.commit('acme/shop', 'upgraded');
    const name = buildName(commit);
    const handle = await env.build(commit);
    await env.waitForStatus(name, 'stopped', 60_000);

    // Release B: its workers next to A's, then promoted; A's stopped.
    const next = `1.1.0-${suffix}`;
    const workerB = await env.startWorker({
      RUNBOAT_WORKER_VERSIONING: 'true',
      RUNBOAT_DEPLOYMENT_NAME: deploymentName,
      RUNBOAT_BUILD_ID: next,
    });
    await eventually(async () => {
      const answer = await describeDeployment();
      const builds = answer.workerDeploymentInfo?.versionSummaries?.map(
        (summary) => summary.deploymentVersion?.buildId,
      );
      expect(builds).toContain(next);
    }, 30_000);
    await promote(next);
    await workerA?.stop('SIGTERM');

    await handle.executeUpdate(startUpdate);
    await env.waitForStatus(name, 'started');
    const info = (await handle.describe()).raw.workflowExecutionInfo;
    expect(info?.versioningInfo?.deploymentVersion).toMatchObject({
      deploymentName,
      buildId: next,
    });
    await handle.executeUpdate(undeployUpdate);
    await handle.result();
    expect(await env.deployment(name)).toBeUndefined();
    const history = await handle.fetchHistory();
    const failedTasks = (history.events ?? []).filter(
      (event) => event.workflowTaskFailedEventAttributes,
    );
    console.log(
      `upgraded build: ${history.events?.length} events, ${failedTasks.length} failed tasks`,
    );
    expect(failedTasks).toEqual([]);
    expect(workerB.child.exitCode).toBeNull();
  });
});
