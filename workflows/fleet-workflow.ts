/**
 * The fleet: a singleton that keeps the cluster within `maxStarted` and `maxDeployed`. It counts
 * from the cluster (an activity), never from its own memory, after a debounce once builds signal
 * a change, and at least every `recountSeconds`; it asks builds to stop or undeploy by signal.
 * Every `stickySeconds` it makes sure each sticky branch head has a build: a loop of its own that
 * the limits never wait for, so that GitHub failing cannot delay them (README, "The fleet, drift
 * and adoption").
 * The fleet in the architecture: docs/architecture.md, "The workflows".
 */
import {
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { BuildActivities } from '../activities/index.js';
import {
  planEvictions,
  SINGLETON_HISTORY_EVENTS,
  type FleetChange,
  type FleetPlan,
} from '../domain/fleet.js';
import {
  evictSignal,
  fleetChangedSignal,
  fleetLimitsSignal,
  type FleetCarried,
  type FleetLimits,
  type FleetWorkflowInput,
} from '../domain/messages.js';

const { fleetSnapshot, fleetPlan } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', maximumInterval: '30s' },
});

/** The plan as a local activity: no wait in the builds task queue behind the builds' activities. */
const local = proxyLocalActivities<BuildActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', maximumInterval: '30s' },
});

// GitHub's failures are handled (and logged once) inside the activity; what still fails it is
// tried again by the next cycle, not by retries that would log the same error over and over.
const { ensureStickyHeads } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 1 },
});

/**
 * Patch: the plan is computed by an activity from the worker's informer cache (only names come
 * back) instead of the whole fleet crossing into the history (docs/upgrades.md).
 */
const FLEET_PLAN_IN_WORKER = 'fleet-plan-in-worker';

/**
 * Patch: the plan is a local activity, run by the worker that runs the fleet (the one with the
 * informer cache), after a shorter debounce: a limit crossed is restored without waiting for a
 * slot of the builds task queue (docs/upgrades.md).
 */
const FLEET_PLAN_LOCAL = 'fleet-plan-local';

/** How long a change a build told is counted while the cache does not show it. */
const TOLD_FOR_MS = 60_000;

/**
 * Patch: an eviction asked for is counted as under way for {@link IN_FLIGHT_FOR_MS} at most, and
 * for {@link SIGNAL_FAILED_RETRY_MS} once its signal failed. A build may ignore the signal (it moved on, or an action of
 * its own is pending) or never get it (its workflow not yet adopted back after Temporal lost it):
 * counted as stopping forever, it hid the excess and the limit stayed crossed (docs/upgrades.md).
 */
const FLEET_IN_FLIGHT_EXPIRES = 'fleet-in-flight-expires';

/** How long an eviction the cache does not show yet is counted as under way. */
const IN_FLIGHT_FOR_MS = 10_000;

/** How soon an eviction whose signal failed is planned again. */
const SIGNAL_FAILED_RETRY_MS = 3_000;

/**
 * Patch: the fleet continues as new once its history passes {@link SINGLETON_HISTORY_EVENTS}
 * events, not only when Temporal suggests it (thousands of events): evicted from a busy worker's
 * cache, it replayed seconds of history before each plan (docs/upgrades.md).
 */
const SINGLETON_SHORT_HISTORY = 'singleton-short-history';

/**
 * Patch: the 200 ms the fleet lets a burst of changes settle are waited in the plan's local
 * activity, not on a workflow timer: Temporal fired that timer after about a second, and a start
 * beyond the limit waited that long to be stopped (docs/upgrades.md).
 */
const FLEET_SETTLE_IN_PLAN = 'fleet-settle-in-plan';

/** Builds signal in bursts (a webhook storm): recount once the burst settles. */
const DEBOUNCE = '500 milliseconds';
const LOCAL_DEBOUNCE_MS = 200;
const LOCAL_DEBOUNCE = `${LOCAL_DEBOUNCE_MS} milliseconds`;

/** The fleet workflow; its id is `fleetWorkflowId(<builds task queue>)`. */
export async function fleetWorkflow(input: FleetWorkflowInput): Promise<void> {
  // Both loops run until the limits continue-as-new (or the workflow is cancelled).
  await Promise.race([keepStickyHeads(input), enforceLimits(input)]);
}

/** Every `stickySeconds` (from the start of the previous check), the sticky branch heads. */
async function keepStickyHeads(input: FleetWorkflowInput): Promise<never> {
  const everyMs = (input.stickySeconds ?? 300) * 1000;
  for (;;) {
    // Workflow time: deterministic.
    const began = Date.now();
    await ensureStickyHeads().catch((error: unknown) =>
      log.warn('sticky heads not checked', { error: String(error) }),
    );
    await sleep(Math.max(1000, everyMs - (Date.now() - began)));
  }
}

/** Counts, plans and evicts; continues as new once the history grows long. */
async function enforceLimits(input: FleetWorkflowInput): Promise<never> {
  let limits: FleetLimits = input.limits;
  let dirty = true;
  const carried = input.carried;
  const inFlight = new Map<string, 'stop' | 'undeploy'>(
    carried?.inFlight.map(({ build, kind }) => [build, kind]),
  );
  /** When each eviction in flight was asked for (workflow time). */
  const askedAt = new Map<string, number>(carried?.inFlight.map(({ build, at }) => [build, at]));
  /** What builds told of their changes, until the cache shows them (workflow time told). */
  const told = new Map<string, { change: FleetChange; at: number }>(
    carried?.told.map((entry) => [entry.change.build, entry]),
  );
  setHandler(fleetChangedSignal, (change) => {
    dirty = true;
    if (change) told.set(change.build, { change, at: Date.now() });
  });
  setHandler(fleetLimitsSignal, (next) => {
    limits = next;
    dirty = true;
  });
  for (;;) {
    const recountMs = (input.recountSeconds ?? 60) * 1000;
    if (askedAt.size > 0 && patched(FLEET_IN_FLIGHT_EXPIRES)) {
      // Look again when the oldest eviction asked for stops counting, if nothing comes first.
      const expires = Math.min(...askedAt.values()) + IN_FLIGHT_FOR_MS - Date.now();
      await condition(() => dirty, Math.max(1, Math.min(recountMs, expires)));
      for (const [name, at] of askedAt) {
        if (Date.now() - at < IN_FLIGHT_FOR_MS) continue;
        askedAt.delete(name);
        if (inFlight.delete(name)) {
          log.info('eviction not seen in time, counted again', { build: name });
          dirty = true;
        }
      }
      if (!dirty) continue;
    } else {
      await condition(() => dirty, recountMs);
    }
    const planLocally = patched(FLEET_PLAN_LOCAL);
    const settleInPlan = planLocally && patched(FLEET_SETTLE_IN_PLAN);
    if (!settleInPlan) await sleep(planLocally ? LOCAL_DEBOUNCE : DEBOUNCE);
    dirty = false;
    let plan: FleetPlan;
    const inWorker = patched(FLEET_PLAN_IN_WORKER);
    if (inWorker) {
      // Planned where the builds are known: only names cross into this history.
      // A change the cache never shows (its Deployment never came) is forgotten after a while.
      for (const [name, { at }] of told) if (Date.now() - at > TOLD_FOR_MS) told.delete(name);
      const request = {
        limits,
        inFlight: Object.fromEntries(inFlight),
        ...(told.size > 0 ? { changes: [...told.values()].map(({ change }) => change) } : {}),
        ...(settleInPlan ? { settleMs: LOCAL_DEBOUNCE_MS } : {}),
      };
      const result = planLocally ? await local.fleetPlan(request) : await fleetPlan(request);
      for (const name of result.settled) {
        inFlight.delete(name);
        askedAt.delete(name);
      }
      for (const name of result.caughtUp ?? []) told.delete(name);
      plan = result;
    } else {
      const snapshot = await fleetSnapshot();
      // An eviction asked for is not yet visible on the cluster: count it as done, so that the same
      // excess is not answered twice (once seen, or once the build is gone, forget it).
      for (const [name, kind] of inFlight) {
        const build = snapshot.find((b) => b.name === name);
        const seen = kind === 'stop' ? ['stopped', 'stopping'] : ['undeploying'];
        if (!build || seen.includes(build.status)) inFlight.delete(name);
      }
      const counted = snapshot.map((build) => {
        const kind = inFlight.get(build.name);
        if (kind === 'undeploy') return { ...build, status: 'undeploying' as const };
        if (kind === 'stop') return { ...build, status: 'stopping' as const };
        return build;
      });
      plan = planEvictions(counted, limits);
    }
    for (const name of plan.stop) inFlight.set(name, 'stop');
    for (const name of plan.undeploy) inFlight.set(name, 'undeploy');
    const expiring = patched(FLEET_IN_FLIGHT_EXPIRES);
    if (expiring)
      for (const name of [...plan.stop, ...plan.undeploy]) askedAt.set(name, Date.now());
    const sends = [
      ...plan.stop.map((name) => [name, 'stop'] as const),
      ...plan.undeploy.map((name) => [name, 'undeploy'] as const),
    ].map(([name, kind]) => async () => {
      await getExternalWorkflowHandle(name)
        .signal(evictSignal, kind)
        .catch((error: unknown) => {
          log.warn(`${kind} not sent`, { build: name, error: String(error) });
          // Not under way: counted as it is again soon (not at once: a build whose workflow is
          // gone until the next adoption round would be asked over and over).
          if (expiring) askedAt.set(name, Date.now() - IN_FLIGHT_FOR_MS + SIGNAL_FAILED_RETRY_MS);
        });
    });
    // All at once (one workflow task, whatever the number); runs from before the patch sent one
    // signal per task and replay them so.
    if (inWorker) await Promise.all(sends.map((send) => send()));
    else for (const send of sends) await send();
    if (plan.stop.length + plan.undeploy.length > 0) {
      log.info('evicting', { stop: plan.stop, undeploy: plan.undeploy, limits });
      // Look again soon: the evictions change the counts, and other builds may have come.
      dirty = true;
    }
    const info = workflowInfo();
    const longHistory =
      input.maxHistoryEvents !== undefined
        ? info.historyLength > input.maxHistoryEvents
        : info.historyLength > SINGLETON_HISTORY_EVENTS && patched(SINGLETON_SHORT_HISTORY);
    if (info.continueAsNewSuggested || longHistory) {
      const next: FleetCarried = {
        inFlight: [...inFlight].map(([build, kind]) => ({
          build,
          kind,
          at: askedAt.get(build) ?? Date.now(),
        })),
        told: [...told.values()],
      };
      return continueAsNew<typeof fleetWorkflow>({ ...input, limits, carried: next });
    }
  }
}
