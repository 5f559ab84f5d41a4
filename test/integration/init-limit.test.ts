/**
 * One global init limit (docs/architecture.md, "Task queues and the init limit"):
 * `RUNBOAT_MAX_INITIALIZING` holds across any number of init workers, observed on the cluster;
 * each init gives its slot back once; a slot whose init is cancelled, or whose build is gone,
 * comes back.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  initSlotReleaseSignal,
  initSlotRequestSignal,
  initSlotsQuery,
  initSlotsWorkflowId,
  resetUpdate,
  undeployUpdate,
  type InitSlotsState,
} from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { createBuildEnv, observeInitJobs, slowInitRepo, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const LIMIT = 4;
let env: BuildEnv;
/** The builds of the first test, all stopped once it passed. */
let limited: string[] = [];

type HistoryEvent = NonNullable<
  Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']
>[number];

/** The events of every run of the init slots workflow, oldest run first. */
async function slotsHistory(): Promise<HistoryEvent[]> {
  const id = initSlotsWorkflowId(env.temporal.initTaskQueue);
  const runs: HistoryEvent[][] = [];
  let runId: string | undefined;
  do {
    const events = (await env.client.workflow.getHandle(id, runId).fetchHistory()).events ?? [];
    runs.unshift(events);
    runId =
      events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
  } while (runId);
  return runs.flat();
}

/** The build named by each release signal the init slots workflow received, in order. */
async function releasesReceived(): Promise<{ build: string; event: HistoryEvent }[]> {
  return (await slotsHistory()).flatMap((event) => {
    const signal = event.workflowExecutionSignaledEventAttributes;
    if (signal?.signalName !== initSlotReleaseSignal.name) return [];
    const data = signal.input?.payloads?.[0]?.data;
    return [{ build: JSON.parse(Buffer.from(data!).toString()) as string, event }];
  });
}

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      slowInitRepo('20s'),
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
    const firstRelease = new Map<string, number>();
    for (const { build, event } of await releasesReceived()) {
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
    // The init activity releases the slot before it ends.
    expect(early).toEqual(limited);
  });

  it("gives each slot back with one signal: the init activity's, none of the workflow", async () => {
    expect(limited).toHaveLength(16);
    // Whatever release a build's workflow sends goes with the workflow task that takes its init
    // activity's completion: once that task is done and its signals delivered, all are in.
    for (const build of limited) {
      await eventually(async () => {
        const events = (await env.client.workflow.getHandle(build).fetchHistory()).events ?? [];
        const scheduled = events.find(
          (event) =>
            event.activityTaskScheduledEventAttributes?.activityType?.name === 'initialize',
        );
        const completed = events.findIndex(
          (event) =>
            event.activityTaskCompletedEventAttributes?.scheduledEventId?.toString() ===
            scheduled?.eventId?.toString(),
        );
        expect(completed, `${build}: its init activity completed`).toBeGreaterThanOrEqual(0);
        const after = events.slice(completed);
        expect(after.some((event) => event.workflowTaskCompletedEventAttributes)).toBe(true);
        const answered = new Set(
          after.map((event) =>
            (
              event.externalWorkflowExecutionSignaledEventAttributes ??
              event.signalExternalWorkflowExecutionFailedEventAttributes
            )?.initiatedEventId?.toString(),
          ),
        );
        for (const event of after) {
          const sent = event.signalExternalWorkflowExecutionInitiatedEventAttributes;
          if (sent?.signalName !== initSlotReleaseSignal.name) continue;
          expect(answered.has(event.eventId?.toString()), `${build}: release delivered`).toBe(true);
        }
      });
    }
    const perBuild = new Map(limited.map((build) => [build, 0]));
    for (const { build } of await releasesReceived()) {
      if (perBuild.has(build)) perBuild.set(build, perBuild.get(build)! + 1);
    }
    const counts = [...perBuild.values()];
    console.log(`release signals per build: ${counts.join(' ')}`);
    expect(counts).toEqual(limited.map(() => 1));
  });

  it(
    'frees the slot of an init cancelled by a reset or an undeploy, waiting or running',
    {
      timeout: 180_000,
    },
    async () => {
      const slots = env.client.workflow.getHandle(initSlotsWorkflowId(env.temporal.initTaskQueue));
      const state = () => slots.query(initSlotsQuery);
      // LIMIT builds hold the slots with 20 s inits; two more wait.
      const commits = Array.from({ length: LIMIT + 2 }, (_, i) =>
        env.commit('acme/slow', `c-${i}`),
      );
      const names = commits.map(buildName);
      const handles = [];
      for (const commit of commits) {
        handles.push(await env.build(commit));
        if (handles.length <= LIMIT) await env.waitForStatus(buildName(commit), 'initializing');
      }
      const [undeployedRunning, resetRunning, keptA, keptB, undeployedWaiting, resetWaiting] =
        names;
      await eventually(async () => {
        const { holders, waiting } = await state();
        expect([...holders].sort()).toEqual(names.slice(0, LIMIT).sort());
        expect([...waiting].sort()).toEqual(names.slice(LIMIT).sort());
      }, 30_000);

      await Promise.all([
        handles[0]!.executeUpdate(undeployUpdate),
        handles[1]!.executeUpdate(resetUpdate),
        handles[4]!.executeUpdate(undeployUpdate),
        handles[5]!.executeUpdate(resetUpdate),
      ]);
      // The undeployed builds end; by then their slot and their place in the queue are gone, well
      // before the check for holders that no longer run (every 60 s).
      for (const name of [undeployedRunning, undeployedWaiting]) {
        await env.client.workflow.getHandle(name!).result();
      }
      await eventually(
        async () => {
          const { holders, waiting } = await state();
          expect([...holders, ...waiting]).not.toContain(undeployedRunning);
          expect([...holders, ...waiting]).not.toContain(undeployedWaiting);
        },
        5_000,
        100,
      );
      // The reset builds asked again, the one that ran with a fresh ticket: every build left
      // initializes and stops, and the slots end empty.
      for (const name of [resetRunning, keptA, keptB, resetWaiting]) {
        await env.waitForStatus(name!, 'stopped', 120_000);
      }
      await eventually(
        async () => {
          expect(await state()).toEqual({ limit: LIMIT, holders: [], waiting: [] });
        },
        10_000,
        100,
      );
    },
  );

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
