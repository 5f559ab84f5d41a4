/**
 * What the fleet counts beyond the cache survives its continue-as-new, and an eviction that does
 * not happen stops counting: the evictions asked for and the changes builds told are handed to
 * the next run; an eviction whose signal failed is planned again seconds later. Only Temporal is
 * needed: the plan is the test's own, and it answers as the real one does (a build counted as
 * stopping is no excess).
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetPlanRequest, FleetPlanResult } from '../../activities/fleet.js';
import { fleetChangedSignal, type FleetWorkflowInput } from '../../domain/messages.js';
import { eventually } from './helpers.js';
import { startWorkflowWorker, type WorkflowWorker } from './workflow-worker.js';

const taskQueue = `fleet-carried-${randomBytes(4).toString('hex')}`;
/** A build the plan wants stopped; it has no workflow, so the fleet's signal to it fails. */
const GHOST = 'ghost-build';
const requests: { at: number; request: FleetPlanRequest }[] = [];
let env: WorkflowWorker | undefined;

beforeAll(async () => {
  env = await startWorkflowWorker({
    taskQueue,
    workflowsPath: fileURLToPath(new URL('../../workflows/index.ts', import.meta.url)),
    activities: {
      fleetPlan: (request: FleetPlanRequest): Promise<FleetPlanResult> => {
        requests.push({ at: Date.now(), request });
        const stopping = request.inFlight[GHOST] === 'stop';
        return Promise.resolve({
          stop: stopping ? [] : [GHOST],
          undeploy: [],
          settled: [],
          caughtUp: [],
          counts: { deployed: 2, running: 2 },
        });
      },
      ensureStickyHeads: () => Promise.resolve({ builds: [], failed: [] }),
    },
  });
}, 120_000);

afterAll(async () => {
  await env?.stop();
});

describe('the fleet across continue-as-new', () => {
  it('hands over what it counts, and plans a failed eviction again', async () => {
    if (!env) throw new Error('no worker');
    const input: FleetWorkflowInput = {
      limits: { maxStarted: 1, maxDeployed: 10 },
      recountSeconds: 3600,
      stickySeconds: 3600,
      // A new run after every plan.
      maxHistoryEvents: 1,
    };
    const told = {
      build: 'told-build',
      status: 'starting' as const,
      lastScaled: '2026-01-01T00:00:00Z',
    };
    const handle = await env.client.workflow.signalWithStart('fleetWorkflow', {
      workflowId: `fleet-carried-${randomBytes(4).toString('hex')}`,
      taskQueue,
      args: [input],
      signal: fleetChangedSignal,
      signalArgs: [told],
    });
    try {
      // The signal to the build without a workflow failed: planned again 3 s later, not never.
      const again = await eventually(
        async () => {
          const asked = requests.findIndex((r, i) => i > 0 && !(GHOST in r.request.inFlight));
          expect(asked).toBeGreaterThan(0);
          return Promise.resolve(asked);
        },
        20_000,
        200,
      );
      const first = requests[0];
      const second = requests[1];
      if (!first || !second) throw new Error('fewer than two plans');
      // Each plan ran in a run of its own: the second run still counted the eviction and the
      // change told to the first.
      const runs = await env.client.workflowService.countWorkflowExecutions({
        namespace: env.client.options.namespace,
        query: `WorkflowId = '${handle.workflowId}'`,
      });
      expect(runs.count?.toNumber()).toBeGreaterThan(2);
      expect(first.request.inFlight).toEqual({});
      expect(second.request.inFlight).toEqual({ [GHOST]: 'stop' });
      expect(second.request.changes).toEqual([told]);
      const waited = (requests[again]?.at ?? 0) - first.at;
      expect(waited).toBeGreaterThanOrEqual(2_500);
      expect(waited).toBeLessThan(10_000);
      console.log(
        `${requests.length} plans; the failed eviction counted again ${waited} ms after it was asked`,
      );
    } finally {
      await handle.terminate('test over');
    }
  });
});
