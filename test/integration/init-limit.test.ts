/**
 * One global init limit (docs/architecture.md, "Task queues and the init limit"):
 * `RUNBOAT_MAX_INITIALIZING` holds across any number of init workers, observed on the cluster;
 * a slot whose build is gone comes back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  initSlotReleaseSignal,
  initSlotRequestSignal,
  initSlotsQuery,
  initSlotsWorkflowId,
  type InitSlotsState,
} from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { createBuildEnv, observeInitJobs, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const LIMIT = 4;
let env: BuildEnv;
/** The builds of the first test, all stopped once it passed. */
let limited: string[] = [];

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/.*',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '2s' } },
          },
        ],
      },
    ],
  });
  const limit = { RUNBOAT_MAX_INITIALIZING: String(LIMIT) };
  // One builds worker and three init workers, each with as many slots as the whole limit:
  // without one limit for all of them, 12 init Jobs could run at once.
  await env.startWorker({ ...limit, RUNBOAT_WORKER_ROLES: 'builds' });
  for (let i = 0; i < 3; i++) await env.startWorker({ ...limit, RUNBOAT_WORKER_ROLES: 'init' });
});

afterAll(async () => {
  await env?.close();
});

describe('the global init limit', () => {
  it(`never runs more than ${LIMIT} init Jobs with 3 init workers, and uses all ${LIMIT}`, async () => {
    const observer = await observeInitJobs(env);
    const slots = env.client.workflow.getHandle(initSlotsWorkflowId(env.temporal.initTaskQueue));
    const seenHolders: number[] = [];
    const polling = setInterval(() => {
      slots
        .query(initSlotsQuery)
        .then((state: InitSlotsState) => seenHolders.push(state.holders.length))
        .catch(() => undefined);
    }, 100);
    try {
      const commits = Array.from({ length: 16 }, (_, i) => env.commit('acme/shop', `f-${i}`));
      limited = commits.map(buildName);
      const began = Date.now();
      await Promise.all(commits.map((commit) => env.build(commit)));
      for (const commit of commits) await env.waitForStatus(buildName(commit), 'stopped', 120_000);
      const makespan = Date.now() - began;
      console.log(
        `16 builds, limit ${LIMIT}, 3 init workers: peak ${observer.peak} init Jobs, ` +
          `peak ${Math.max(...seenHolders)} slot holders, all stopped after ${makespan} ms`,
      );
      expect(observer.peak).toBe(LIMIT);
      expect(Math.max(...seenHolders)).toBeLessThanOrEqual(LIMIT);
      // Each build ran exactly one init Job.
      expect([...observer.created.values()].every((count) => count === 1)).toBe(true);
      expect(observer.created.size).toBe(16);
      // A build gives its slot back just after it shows stopped.
      await eventually(
        async () => {
          expect(await slots.query(initSlotsQuery)).toEqual({
            limit: LIMIT,
            holders: [],
            waiting: [],
          });
        },
        10_000,
        100,
      );
    } finally {
      clearInterval(polling);
      observer.stop();
    }
  });

  it("gives a slot back as soon as its init Job has ended, before the init activity's end", async () => {
    expect(limited).toHaveLength(16);
    const at = (event: { eventTime?: { seconds?: unknown; nanos?: number | null } | null }) =>
      Number(event.eventTime?.seconds ?? 0) * 1000 + (event.eventTime?.nanos ?? 0) / 1e6;
    const slots = env.client.workflow.getHandle(initSlotsWorkflowId(env.temporal.initTaskQueue));
    const firstRelease = new Map<string, number>();
    for (const event of (await slots.fetchHistory()).events ?? []) {
      const signal = event.workflowExecutionSignaledEventAttributes;
      if (signal?.signalName !== initSlotReleaseSignal.name) continue;
      const build = JSON.parse(Buffer.from(signal.input!.payloads![0]!.data!).toString()) as string;
      if (!firstRelease.has(build)) firstRelease.set(build, at(event));
    }
    const early: string[] = [];
    for (const build of limited) {
      const history = await env.client.workflow.getHandle(build).fetchHistory();
      const events = history.events ?? [];
      const scheduled = events.find(
        (event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'initialize',
      );
      const completed = events.find(
        (event) =>
          event.activityTaskCompletedEventAttributes?.scheduledEventId?.toString() ===
          scheduled?.eventId?.toString(),
      );
      expect(completed, `${build}: its init activity completed`).toBeDefined();
      const released = firstRelease.get(build);
      expect(released, `${build}: its slot was given back`).toBeDefined();
      if (released! <= at(completed!)) early.push(build);
    }
    // The init activity releases the slot before it ends; the workflow's own release follows.
    expect(early).toEqual(limited);
  });

  it('frees the slot of a build whose workflow is gone', async () => {
    // A slots workflow of its own, checking every second; the holder is a workflow that runs
    // (here another slots workflow, which takes the grant signal and ignores it).
    const id = `init-slots-check-${Date.now()}`;
    const start = (workflowId: string) =>
      env.client.workflow.start('initSlotsWorkflow', {
        workflowId,
        taskQueue: env.temporal.buildsTaskQueue,
        args: [{ limit: 1, checkSeconds: 1 }],
      });
    const slots = await start(id);
    const holder = await start(`${id}-holder`);
    await slots.signal(initSlotRequestSignal, { build: holder.workflowId, ticket: 1 });
    await slots.signal(initSlotRequestSignal, { build: 'a-build-that-waits', ticket: 1 });
    await eventually(async () => {
      expect(await slots.query(initSlotsQuery)).toEqual({
        limit: 1,
        holders: [holder.workflowId],
        waiting: ['a-build-that-waits'],
      });
    }, 10_000);
    await holder.terminate('gone');
    const freed = Date.now();
    // The waiting build does not exist either: granted, then freed again.
    await eventually(
      async () => {
        expect(await slots.query(initSlotsQuery)).toEqual({ limit: 1, holders: [], waiting: [] });
      },
      10_000,
      100,
    );
    console.log(`slot of a terminated holder freed after ${Date.now() - freed} ms`);
    await slots.terminate('test over');
  });
});
