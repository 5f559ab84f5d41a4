/**
 * The global init limit (docs/architecture.md, "Task queues and the init limit"): a singleton per
 * init task queue that hands out `limit` slots, first come first served, whatever the number of
 * init workers. A build workflow asks for a slot before its init Job, waits for the grant (a
 * signal), and gives the slot back when its init ends or when it stops waiting. A holder whose
 * workflow is gone (terminated, lost) is found by a periodic check and its slot freed.
 */
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { BuildActivities } from '../activities/index.js';
import { SINGLETON_HISTORY_EVENTS } from '../domain/fleet.js';
import {
  initSlotGrantedSignal,
  initSlotReleaseSignal,
  initSlotRequestSignal,
  initSlotsLimitSignal,
  initSlotsQuery,
  type InitSlotsInput,
  type InitSlotTicket,
} from '../domain/messages.js';

const { workflowsNotRunning } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', maximumInterval: '30s' },
});

/**
 * Patch: the grants go out without waiting for the previous ones to be delivered, so that a slot
 * released meanwhile is handed over in the same workflow task (docs/upgrades.md).
 */
const GRANT_AT_ONCE = 'init-slots-grant-at-once';

/**
 * Patch: the workflow continues as new once its history passes {@link SINGLETON_HISTORY_EVENTS}
 * events, not only when Temporal suggests it (thousands of events): evicted from a busy worker's
 * cache, it replays its whole history before its next grant (docs/upgrades.md).
 */
const SHORT_HISTORY = 'singleton-short-history';

/** The init slots workflow; its id is `initSlotsWorkflowId(<init task queue>)`. */
export async function initSlotsWorkflow(input: InitSlotsInput): Promise<void> {
  let limit = input.limit;
  /** Build → the ticket it holds its slot by. */
  const holders = new Map((input.holders ?? []).map(({ build, ticket }) => [build, ticket]));
  const waiting: InitSlotTicket[] = [...(input.waiting ?? [])];
  const checkMs = (input.checkSeconds ?? 60) * 1000;
  const held = () => [...holders].map(([build, ticket]) => ({ build, ticket }));
  /** Temporal suggests a new run, or history is longer than the input allows (no command). */
  const continueAsNewDue = () => {
    const info = workflowInfo();
    if (info.continueAsNewSuggested) return true;
    const most = input.maxHistoryEvents;
    if (most !== undefined) return info.historyLength > most;
    return info.historyLength > SINGLETON_HISTORY_EVENTS && patched(SHORT_HISTORY);
  };

  setHandler(initSlotsQuery, () => ({
    limit,
    holders: [...holders.keys()],
    waiting: waiting.map((entry) => entry.build),
  }));
  setHandler(initSlotsLimitSignal, (next) => {
    limit = next;
  });
  setHandler(initSlotRequestSignal, async ({ build, ticket, force }) => {
    const index = waiting.findIndex((entry) => entry.build === build);
    if (index >= 0) waiting.splice(index, 1);
    if (holders.has(build) || force) {
      // Asked again while holding one (a retried request), or an init that already runs.
      holders.set(build, ticket);
      await grant({ build, ticket });
      return;
    }
    waiting.push({ build, ticket });
  });
  setHandler(initSlotReleaseSignal, (build) => {
    holders.delete(build);
    const index = waiting.findIndex((entry) => entry.build === build);
    if (index >= 0) waiting.splice(index, 1);
  });

  /** Tells a build its slot is there; a build that is gone frees it again. */
  async function grant({ build, ticket }: InitSlotTicket): Promise<void> {
    try {
      await getExternalWorkflowHandle(build).signal(initSlotGrantedSignal, ticket);
    } catch (error) {
      log.warn('init slot not granted: the build is gone', { build, error: String(error) });
      if (holders.get(build) === ticket) holders.delete(build);
    }
  }

  /** Grants sent and not yet delivered (or refused). */
  const grantsInFlight = new Set<Promise<void>>();
  const free = () => waiting.length > 0 && holders.size < limit;
  let lastCheck = Date.now();
  for (;;) {
    const due = await condition(free, Math.max(1, checkMs - (Date.now() - lastCheck)));
    if (due) {
      // Every free slot at once, in one workflow task.
      const granted: InitSlotTicket[] = [];
      while (free()) {
        const next = waiting.shift() as InitSlotTicket;
        holders.set(next.build, next.ticket);
        granted.push(next);
      }
      // Each grant handles its own failure (the build gone frees the slot again).
      if (patched(GRANT_AT_ONCE)) {
        for (const next of granted) {
          const sent = grant(next);
          grantsInFlight.add(sent);
          void sent.finally(() => grantsInFlight.delete(sent));
        }
      } else await Promise.all(granted.map(grant));
    } else {
      lastCheck = Date.now();
      if (holders.size > 0) {
        // A holder whose workflow no longer runs never gives its slot back.
        for (const build of await workflowsNotRunning([...holders.keys()])) {
          if (holders.delete(build)) log.warn('init slot freed: its build is gone', { build });
        }
      }
    }
    if (continueAsNewDue()) {
      await condition(allHandlersFinished);
      // A grant not yet delivered would be lost with this run: its build would wait for ever
      // while the next run counts it as a holder.
      await Promise.all(grantsInFlight);
      return continueAsNew<typeof initSlotsWorkflow>({
        ...input,
        limit,
        holders: held(),
        waiting,
      });
    }
  }
}
