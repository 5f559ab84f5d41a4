/**
 * The fleet's rules (docs/architecture.md): at most `maxStarted` builds run — beyond that the least
 * recently scaled are stopped — and at most `maxDeployed` exist — beyond that the oldest stopped
 * or failed builds by last-scaled are undeployed, never the newest build of a sticky branch,
 * never one initializing or started.
 */
import type { BuildStatus } from './build.js';
import type { FleetLimits } from './messages.js';

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
