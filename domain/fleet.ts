/**
 * The fleet's rules (docs/architecture.md): at most `maxStarted` builds run — beyond that the least
 * recently scaled are stopped — and at most `maxDeployed` exist — beyond that the oldest stopped
 * or failed builds by last-scaled are undeployed, never the newest build of a sticky branch,
 * never one initializing or started.
 */
import type { BuildStatus } from './build.js';
import type { FleetLimits } from './messages.js';

/**
 * History events after which the fleet and the init slots workflows continue as new. Both are
 * singletons that every build talks to: when a busy worker's cache evicts one, its next task
 * replays its history first, and at the thousands of events Temporal suggests that took seconds
 * (docs/architecture.md, "The workflows").
 */
export const SINGLETON_HISTORY_EVENTS = 1000;

/** What the rules need to know of a build. */
export interface FleetMember {
  name: string;
  status: BuildStatus;
  /** ISO time; compared as text. */
  lastScaled: string;
  sticky: boolean;
}

/** The builds to stop and to undeploy. */
export interface FleetPlan {
  stop: string[];
  undeploy: string[];
}

const byLastScaled = (a: FleetMember, b: FleetMember) =>
  a.lastScaled.localeCompare(b.lastScaled) || a.name.localeCompare(b.name);

/** Decides what to evict so that the cluster holds no more than the limits. */
export function planEvictions(builds: readonly FleetMember[], limits: FleetLimits): FleetPlan {
  const running = builds.filter((b) => b.status === 'started' || b.status === 'starting');
  const stop = running
    .sort(byLastScaled)
    .slice(0, Math.max(0, running.length - limits.maxStarted))
    .map((b) => b.name);
  const deployed = builds.filter(
    (b) => b.status !== 'undeploying' && b.status !== 'cleanup-failed',
  );
  const excess = deployed.length - limits.maxDeployed;
  const undeploy =
    excess <= 0
      ? []
      : deployed
          .filter((b) => (b.status === 'stopped' || b.status === 'failed') && !b.sticky)
          .sort(byLastScaled)
          .slice(0, excess)
          .map((b) => b.name);
  return { stop, undeploy };
}

/**
 * What a build told the fleet of itself when it changed (`fleetChangedSignal`): its status and
 * the last-scaled time it wrote onto its Deployment.
 */
export interface FleetChange {
  build: string;
  status: BuildStatus;
  /** ISO time the build wrote as `runboat/last-scaled`; empty when it never scaled. */
  lastScaled: string;
}

/**
 * The members as the builds told them, where the cache the fleet plans from has not shown their
 * change yet (a watch a few hundred milliseconds late would otherwise hide a start beyond the
 * limit until the next change). `caughtUp`: the changes the cache now shows, or whose build it
 * no longer has; those need not be told again.
 */
export function withChanges<M extends FleetMember>(
  members: readonly M[],
  changes: readonly FleetChange[],
  unseen: (change: FleetChange) => M,
): { members: M[]; caughtUp: string[] } {
  const index = new Map(members.map((member, i) => [member.name, i]));
  const result = members.slice();
  const caughtUp: string[] = [];
  for (const change of changes) {
    const i = index.get(change.build);
    const member = i === undefined ? undefined : result[i];
    if (i === undefined || !member) {
      // Not seen yet: a new build counts towards the deployed limit; any other is gone.
      if (change.status === 'todo') result.push(unseen(change));
      else caughtUp.push(change.build);
    } else if (member.lastScaled >= change.lastScaled) {
      caughtUp.push(change.build);
    } else {
      result[i] = { ...member, status: change.status, lastScaled: change.lastScaled };
    }
  }
  return { members: result, caughtUp };
}
