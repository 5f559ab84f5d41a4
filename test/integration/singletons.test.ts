/**
 * The fleet and the init slots come back: a builds worker that finds them gone (Temporal lost its
 * database, an operator terminated them) starts them again at its next check, so the limits hold
 * without a worker restart (docs/runbook.md, "Temporal lost its database").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetWorkflowId, initSlotsWorkflowId } from '../../domain/messages.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  await env.startWorker({ RUNBOAT_ADOPT_INTERVAL_SECONDS: '1' });
});

afterAll(async () => {
  await env?.close();
});

describe('the singletons of a builds queue', () => {
  it('start again within a check interval once terminated', async () => {
    for (const id of [
      fleetWorkflowId(env.temporal.buildsTaskQueue),
      initSlotsWorkflowId(env.temporal.initTaskQueue),
    ]) {
      const handle = env.client.workflow.getHandle(id);
      const before = await handle.describe();
      expect(before.status.name).toBe('RUNNING');
      await handle.terminate('gone, as after a Temporal wipe');
      const terminated = Date.now();
      const after = await eventually(
        async () => {
          const now = await env.client.workflow.getHandle(id).describe();
          expect(now.status.name).toBe('RUNNING');
          expect(now.runId).not.toBe(before.runId);
          return now;
        },
        20_000,
        200,
      );
      console.log(`${id} running again after ${Date.now() - terminated} ms (run ${after.runId})`);
    }
  });
});
