/**
 * RUNBOAT_MAX_CACHED_WORKFLOWS bounds the builds worker's memory: with a cache of 2 workflows,
 * 6 builds still take their start, stop and reset, each one evicted and replayed between its
 * tasks (docs/operations.md, "Memory").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetUpdate, startUpdate, stopUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  await env.startWorker({ RUNBOAT_MAX_CACHED_WORKFLOWS: '2', RUNBOAT_MAX_INITIALIZING: '6' });
});

afterAll(async () => {
  await env?.close();
});

describe('a builds worker with a cache of 2 workflows', () => {
  it('serves 6 builds through start, stop and reset, replaying the evicted ones', async () => {
    const commits = Array.from({ length: 6 }, (_, i) => env.commit('acme/shop', `cache-${i}`));
    await Promise.all(commits.map((commit) => env.build(commit)));
    const built = commits.map(buildName);
    for (const name of built) await env.waitForStatus(name, 'stopped');
    for (const [update, status] of [
      [startUpdate, 'started'],
      [stopUpdate, 'stopped'],
      [resetUpdate, 'stopped'],
    ] as const) {
      // All at once: more builds act than the cache holds.
      await Promise.all(
        built.map((name) => env.client.workflow.getHandle(name).executeUpdate(update)),
      );
      for (const name of built) await env.waitForStatus(name, status);
    }
    // Each reset ran a second init Job: the replayed workflows kept their state.
    const jobs = await env.kube.batch.listNamespacedJob({
      namespace: env.namespace,
      labelSelector: 'runboat/job-kind=initialize',
    });
    const generations = jobs.items.map((job) => job.metadata?.name?.split('-init-')[1]);
    expect(generations.filter((g) => g === '2')).toHaveLength(6);
  });
});
