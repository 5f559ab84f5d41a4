/**
 * The fleet and the init slots come back: a builds worker that finds them gone (Temporal lost its
 * database, an operator terminated them) starts them again within seconds, whatever the adoption
 * interval, and adopts the builds left without a workflow at once, so the limits hold and the
 * builds serve again without a worker restart (docs/runbook.md, "Temporal lost its database").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetWorkflowId, initSlotsWorkflowId, stateQuery } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  // An adoption round every 10 minutes: what comes back within seconds is not the round's doing.
  await env.startWorker({ RUNBOAT_ADOPT_INTERVAL_SECONDS: '600' });
});

afterAll(async () => {
  await env?.close();
});

/** Waits until the workflow runs in a run other than `previousRunId`; the time it took. */
async function runningAgain(id: string, previousRunId: string | undefined, since: number) {
  const after = await eventually(
    async () => {
      const now = await env.client.workflow.getHandle(id).describe();
      expect(now.status.name).toBe('RUNNING');
      expect(now.runId).not.toBe(previousRunId);
      return now;
    },
    20_000,
    200,
  );
  return { runId: after.runId, ms: Date.now() - since };
}

describe('the singletons of a builds queue', () => {
  it('start again within seconds once terminated, with a long adoption interval', async () => {
    for (const id of [
      fleetWorkflowId(env.temporal.buildsTaskQueue),
      initSlotsWorkflowId(env.temporal.initTaskQueue),
    ]) {
      const handle = env.client.workflow.getHandle(id);
      const before = await handle.describe();
      expect(before.status.name).toBe('RUNNING');
      await handle.terminate('gone, as after a Temporal wipe');
      const again = await runningAgain(id, before.runId, Date.now());
      expect(again.ms).toBeLessThan(15_000);
      console.log(`${id} running again after ${again.ms} ms (run ${again.runId})`);
    }
  });

  it('once gone, a build left without its workflow is adopted at once, not a round later', async () => {
    const commit = env.commit('acme/shop', 'left-behind');
    const name = buildName(commit);
    await env.build(commit);
    await env.waitForStatus(name, 'stopped');
    // As after a wipe: the build's workflow and the fleet are gone, the Deployment stays.
    const build = env.client.workflow.getHandle(name);
    const previous = (await build.describe()).runId;
    await build.terminate('gone, as after a Temporal wipe');
    const fleet = env.client.workflow.getHandle(fleetWorkflowId(env.temporal.buildsTaskQueue));
    const fleetRun = (await fleet.describe()).runId;
    const gone = Date.now();
    await fleet.terminate('gone, as after a Temporal wipe');

    const adopted = await runningAgain(name, previous, gone);
    const state = await build.query(stateQuery);
    expect(state.status).toBe('stopped');
    expect(state.commit).toEqual(commit);
    expect(adopted.ms).toBeLessThan(15_000);
    const fleetAgain = await runningAgain(fleet.workflowId, fleetRun, gone);
    console.log(
      `build adopted ${adopted.ms} ms and fleet running ${fleetAgain.ms} ms after both were terminated`,
    );
  });
});
