/**
 * The fleet and the init slots workflows keep their histories short: every build talks to them,
 * and a busy worker that evicted one from its cache replays its whole history before its next
 * task. Without an explicit limit each continues as new once past `SINGLETON_HISTORY_EVENTS`
 * (not only at the thousands of events after which Temporal suggests it). Only Temporal is
 * needed: the activities the two call answer that there is nothing to do.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SINGLETON_HISTORY_EVENTS } from '../../domain/fleet.js';
import {
  fleetChangedSignal,
  initSlotReleaseSignal,
  initSlotRequestSignal,
  type FleetWorkflowInput,
  type InitSlotsInput,
} from '../../domain/messages.js';
import { startWorkflowWorker, type WorkflowWorker } from './workflow-worker.js';

const taskQueue = `singleton-history-${randomBytes(4).toString('hex')}`;
let env: WorkflowWorker | undefined;
let client: Client;

beforeAll(async () => {
  env = await startWorkflowWorker({
    taskQueue,
    workflowsPath: fileURLToPath(new URL('../../workflows/index.ts', import.meta.url)),
    activities: {
      fleetPlan: () =>
        Promise.resolve({
          stop: [],
          undeploy: [],
          settled: [],
          counts: { deployed: 0, running: 0 },
        }),
      ensureStickyHeads: () => Promise.resolve({ builds: [], failed: [] }),
      workflowsNotRunning: () => Promise.resolve([]),
    },
  });
  client = env.client;
}, 120_000);

afterAll(async () => {
  await env?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Pokes the workflow until it continues as new (at most `timeoutMs`); returns the length of its
 * first run's history and how that run ended.
 */
async function pokeUntilContinued(
  handle: WorkflowHandle,
  poke: (round: number) => Promise<void>,
  timeoutMs = 120_000,
) {
  const firstRun = (await handle.describe()).runId;
  const deadline = Date.now() + timeoutMs;
  for (let round = 0; Date.now() < deadline; round++) {
    await poke(round);
    if (round % 20 === 19 && (await handle.describe()).runId !== firstRun) break;
  }
  const history = await client.workflow.getHandle(handle.workflowId, firstRun).fetchHistory();
  const events = history.events ?? [];
  return {
    continued: (await handle.describe()).runId !== firstRun,
    events: events.length,
    ended: events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes ? 'continued' : 'open',
  };
}

describe('the singletons’ histories', () => {
  it('the fleet continues as new once past SINGLETON_HISTORY_EVENTS', async () => {
    const input: FleetWorkflowInput = {
      limits: { maxStarted: 1, maxDeployed: 1 },
      recountSeconds: 3600,
      stickySeconds: 3600,
    };
    const fleet = await client.workflow.start('fleetWorkflow', {
      workflowId: `fleet-history-${randomBytes(3).toString('hex')}`,
      taskQueue,
      args: [input],
    });
    try {
      // A build changing every 250 ms: each is planned after the 200 ms debounce.
      const first = await pokeUntilContinued(fleet, async () => {
        await fleet.signal(fleetChangedSignal);
        await sleep(250);
      });
      console.log(`fleet: first run ${first.events} events, ${first.ended}`);
      expect(first).toMatchObject({ continued: true, ended: 'continued' });
      expect(first.events).toBeGreaterThan(SINGLETON_HISTORY_EVENTS);
      expect(first.events).toBeLessThan(SINGLETON_HISTORY_EVENTS + 100);
    } finally {
      await fleet.terminate('test over');
    }
  }, 180_000);

  it('the init slots workflow continues as new once past SINGLETON_HISTORY_EVENTS', async () => {
    const id = `init-slots-history-${randomBytes(3).toString('hex')}`;
    const start = (workflowId: string, input: InitSlotsInput) =>
      client.workflow.start('initSlotsWorkflow', { workflowId, taskQueue, args: [input] });
    const slots = await start(id, { limit: 1, checkSeconds: 3600 });
    // The build asking: an idle workflow (another slots workflow, which ignores the grants).
    const build = await start(`${id}-build`, { limit: 0, checkSeconds: 3600 });
    try {
      // A build initialized every 100 ms: asks for the slot, is granted it, gives it back.
      const first = await pokeUntilContinued(slots, async (round) => {
        await slots.signal(initSlotRequestSignal, { build: build.workflowId, ticket: round + 1 });
        await sleep(50);
        await slots.signal(initSlotReleaseSignal, build.workflowId);
        await sleep(50);
      });
      console.log(`init slots: first run ${first.events} events, ${first.ended}`);
      expect(first).toMatchObject({ continued: true, ended: 'continued' });
      expect(first.events).toBeGreaterThan(SINGLETON_HISTORY_EVENTS);
      expect(first.events).toBeLessThan(SINGLETON_HISTORY_EVENTS + 100);
    } finally {
      await Promise.all([slots, build].map((handle) => handle.terminate('test over')));
    }
  }, 180_000);
});
