/**
 * The empty workflow of the floor measurements (bench/floor.ts): the same round trips through
 * Temporal as a build's transitions, with nothing of a build in them, so that a benchmark can say
 * what this server and this machine cost before any work of ours.
 */
import {
  condition,
  defineSignal,
  defineUpdate,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { buildSearchAttributeKeys } from '../domain/search-attributes.js';
import type { FloorActivities } from './floor.js';

export const pingUpdate = defineUpdate<void>('ping');
export const doneSignal = defineSignal('done');

const remote = proxyActivities<FloorActivities>({ startToCloseTimeout: '1 minute' });
const local = proxyLocalActivities<FloorActivities>({ startToCloseTimeout: '1 minute' });

/**
 * Started → a regular activity (a webhook's workflow → its deploy); an update → a local activity
 * (a start → the scale); a held activity's end → a local activity (an init Job's end → the
 * mirror).
 */
export async function floorWorkflow(): Promise<void> {
  let done = false;
  setHandler(doneSignal, () => {
    done = true;
  });
  setHandler(pingUpdate, async () => {
    await local.mark('update');
  });
  await remote.mark('started');
  await remote.held();
  await local.mark('released');
  await condition(() => done);
}

/**
 * An adopted build's first task with nothing of a build in it: one search attribute (what the
 * benchmarks count an adoption by) and one local activity (the build's mirror); then it waits,
 * as a build does.
 */
export async function adoptFloorWorkflow(): Promise<void> {
  let done = false;
  setHandler(doneSignal, () => {
    done = true;
  });
  upsertSearchAttributes([{ key: buildSearchAttributeKeys.status, value: 'stopped' }]);
  await local.mark('adopted');
  await condition(() => done);
}
