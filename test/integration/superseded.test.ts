/**
 * Superseded builds (RUNBOAT_CANCEL_SUPERSEDED): a newer commit of a branch cancels that branch's
 * builds still queued for init, and only those, on the real sandbox.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { ensureBuild } from '../../lib/temporal.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/.*',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '4s' } },
          },
        ],
      },
    ],
  });
  // One init slot: the second commit of a branch waits in the queue.
  await env.startWorker({ RUNBOAT_MAX_INITIALIZING: '1' });
});

afterAll(async () => {
  await env?.close();
});

describe('superseded builds', () => {
  it('cancels the queued build of a branch when a newer commit comes, not the initializing one', async () => {
    const options = { ...env.temporal, cancelSuperseded: true };
    const build = (commit: ReturnType<BuildEnv['commit']>) =>
      ensureBuild(env.client, options, { commit, trigger: { kind: 'webhook' } });
    const running = env.commit('acme/shop', 'busy');
    const queued = env.commit('acme/shop', 'busy');
    const other = env.commit('acme/shop', 'other-branch');
    await build(running);
    await env.waitForStatus(buildName(running), 'initializing');
    await build(queued);
    await build(other);
    await env.waitForStatus(buildName(queued), 'todo');
    // Creation times have a one-second grain: the newest commit must come a second later.
    await new Promise((r) => setTimeout(r, 1100));
    const newest = env.commit('acme/shop', 'busy');
    await build(newest);

    await eventually(
      async () => expect(await env.deployment(buildName(queued))).toBeUndefined(),
      60_000,
    );
    const superseded = await env.client.workflow.getHandle(buildName(queued)).result();
    expect(superseded.initGeneration).toBeLessThanOrEqual(1);
    for (const commit of [running, other, newest]) {
      await env.waitForStatus(buildName(commit), 'stopped', 90_000);
    }
    const jobs = await env.kube.batch.listNamespacedJob({
      namespace: env.namespace,
      labelSelector: `runboat/build=${buildName(queued)}`,
    });
    expect(jobs.items).toEqual([]);
  });
});
