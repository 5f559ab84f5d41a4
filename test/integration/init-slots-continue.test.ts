/**
 * The init slots workflow continues as new without losing a grant: a grant sent in the workflow
 * task that ends the run still reaches its build, so every build that asked gets its slot and the
 * next run counts no holder that was never told. Only Temporal is needed: the requesters are idle
 * workflows whose history shows the grant signals they received.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  initSlotGrantedSignal,
  initSlotReleaseSignal,
  initSlotRequestSignal,
  initSlotsQuery,
  type InitSlotsInput,
} from '../../domain/messages.js';
import { eventually } from './helpers.js';
import { startWorkflowWorker, type WorkflowWorker } from './workflow-worker.js';

const taskQueue = `init-slots-continue-${randomBytes(4).toString('hex')}`;
let env: WorkflowWorker | undefined;
let client: Client;

beforeAll(async () => {
  env = await startWorkflowWorker({
    taskQueue,
    workflowsPath: fileURLToPath(
      new URL('../../workflows/init-slots-workflow.ts', import.meta.url),
    ),
  });
  client = env.client;
}, 120_000);

afterAll(async () => {
  await env?.stop();
});

/** The tickets of the grant signals a workflow received, in order. */
async function grantsReceived(handle: WorkflowHandle): Promise<number[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? []).flatMap((event) => {
    const signaled = event.workflowExecutionSignaledEventAttributes;
    if (signaled?.signalName !== initSlotGrantedSignal.name) return [];
    const payload = signaled.input?.payloads?.[0];
    return payload ? [defaultPayloadConverter.fromPayload<number>(payload)] : [];
  });
}

describe('the init slots workflow continuing as new', () => {
  it('delivers the grants sent in the workflow task that continues it as new', async () => {
    const id = `init-slots-continue-${randomBytes(3).toString('hex')}`;
    const start = (workflowId: string, input: InitSlotsInput) =>
      client.workflow.start('initSlotsWorkflow', { workflowId, taskQueue, args: [input] });
    // Every workflow task that grants slots is past the history limit, so it also continues the
    // workflow as new.
    const slots = await start(id, { limit: 2, checkSeconds: 3600, maxHistoryEvents: 1 });
    const firstRun = (await slots.describe()).runId;
    // Six builds asking for a slot: idle workflows (other slots workflows that ignore the grant).
    const builds = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        start(`${id}-build-${i}`, { limit: 0, checkSeconds: 3600 }),
      ),
    );
    const started = Date.now();
    try {
      for (const build of builds) {
        await slots.signal(initSlotRequestSignal, { build: build.workflowId, ticket: 1 });
      }
      // Each build gives its slot back once granted, as after its init, so the next ones get theirs.
      const granted = new Set<string>();
      await eventually(
        async () => {
          for (const build of builds) {
            if (granted.has(build.workflowId)) continue;
            if ((await grantsReceived(build)).length === 0) continue;
            granted.add(build.workflowId);
            await slots.signal(initSlotReleaseSignal, build.workflowId);
          }
          expect({
            granted: [...granted].sort(),
            slots: await slots.query(initSlotsQuery),
          }).toEqual({
            granted: builds.map((build) => build.workflowId).sort(),
            slots: { limit: 2, holders: [], waiting: [] },
          });
        },
        15_000,
        200,
      );
      // Each build was told once, with the ticket it asked with.
      for (const build of builds) expect(await grantsReceived(build)).toEqual([1]);
      const lastRun = (await slots.describe()).runId;
      expect(lastRun).not.toBe(firstRun);
      console.log(
        `6 builds, 2 slots, history limit 1: all granted after ${Date.now() - started} ms`,
      );
    } finally {
      await Promise.all([slots, ...builds].map((handle) => handle.terminate('test over')));
    }
  });
});
