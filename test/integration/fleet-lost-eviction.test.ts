/**
 * An eviction that does not happen is asked again: when the fleet stops a build whose workflow
 * Temporal no longer has (lost with its database, not yet adopted back), the signal fails; once
 * the build is adopted, the fleet stops it then. Before, the fleet counted the build as stopping
 * for good and the started limit stayed crossed (docs/architecture.md, "The fleet").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_LABEL } from '../../domain/build.js';
import { startUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  // Adoption rounds far enough apart that the fleet's first eviction finds no workflow.
  await env.startWorker({ RUNBOAT_MAX_STARTED: '1', RUNBOAT_ADOPT_INTERVAL_SECONDS: '12' });
});

afterAll(async () => {
  await env?.close();
});

async function startedOnCluster(): Promise<string[]> {
  const list = await env.kube.apps.listNamespacedDeployment({
    namespace: env.namespace,
    labelSelector: BUILD_LABEL,
  });
  return list.items
    .filter((d) => (d.spec?.replicas ?? 0) > 0)
    .map((d) => d.metadata?.name ?? '')
    .sort();
}

describe('the fleet', () => {
  it('stops a build again once its lost workflow is adopted back', async () => {
    const older = env.commit('acme/shop', 'older');
    const newer = env.commit('acme/shop', 'newer');
    for (const commit of [older, newer]) {
      await env.build(commit);
      await env.waitForStatus(buildName(commit), 'stopped');
    }
    await env.client.workflow.getHandle(buildName(older)).executeUpdate(startUpdate);
    await env.waitForStatus(buildName(older), 'started');
    expect(await startedOnCluster()).toEqual([buildName(older)]);

    // The older build's workflow is gone, its Deployment still scaled up.
    await env.client.workflow
      .getHandle(buildName(older))
      .terminate('gone, as after a Temporal wipe');
    const crossed = Date.now();
    await env.client.workflow.getHandle(buildName(newer)).executeUpdate(startUpdate);

    // One start beyond MAX_STARTED=1: the least recently started goes, once it can be told to.
    await eventually(
      async () => expect(await startedOnCluster()).toEqual([buildName(newer)]),
      45_000,
      250,
    );
    console.log(`MAX_STARTED restored ${Date.now() - crossed} ms after the lost build's start`);
    await env.waitForStatus(buildName(older), 'stopped');
  });
});
