/**
 * The fleet's I/O: the builds as the cluster shows them (for `MAX_STARTED` / `MAX_DEPLOYED`) and
 * the sticky branch heads read from GitHub. Built by `createFleetActivities(deps)`, joined with the
 * other activities in `activities/index.ts`.
 */
import { Context } from '@temporalio/activity';
import type { V1Deployment } from '@kubernetes/client-node';
import { BUILD_LABEL, type BuildStatus } from '../domain/build.js';
import { cachedBuildFacts } from '../domain/build-view.js';
import { planEvictions, withChanges, type FleetChange } from '../domain/fleet.js';
import type { FleetLimits } from '../domain/messages.js';
import { GitHubApiError, isTransientGitHubError, type GitHubClient } from '../lib/github.js';
import { listLeanDeployments } from '../lib/kube.js';
import { findRepoConfig } from '../lib/settings.js';
import type { ActivityDeps } from './index.js';

/** What the fleet activities need from the process that runs them. */
export type FleetActivityDeps = Pick<
  ActivityDeps,
  | 'kube'
  | 'namespace'
  | 'buildDomain'
  | 'repos'
  | 'github'
  | 'logger'
  | 'ensureBuild'
  | 'deploymentCache'
>;

/** What the fleet asks: its limits, and the evictions it asked for that may not show yet. */
export interface FleetPlanRequest {
  limits: FleetLimits;
  inFlight: Record<string, 'stop' | 'undeploy'>;
  /** What builds told the fleet of their changes, still to be seen in the cache. */
  changes?: FleetChange[];
  /**
   * How long to let a burst of changes settle before planning, here in the worker: a workflow
   * timer of 200 ms fired after ~1 s on the sandbox's Temporal (docs/upgrades.md).
   */
  settleMs?: number;
}

/** The evictions to ask for, and nothing of the fleet itself (docs/architecture.md). */
export interface FleetPlanResult {
  stop: string[];
  undeploy: string[];
  /** Evictions in flight that the cluster now shows done (or whose build is gone). */
  settled: string[];
  /** Builds whose told change the cache now shows (or that are gone). */
  caughtUp?: string[];
  /** Counts as planned from, for the fleet's log. */
  counts: { deployed: number; running: number };
}

/** A build as the fleet sees it. */
export interface FleetBuild {
  name: string;
  status: BuildStatus;
  /** ISO time of the last scale (creation when never scaled). */
  lastScaled: string;
  created: string;
  repo: string;
  targetBranch: string;
  pr: number | null;
  /** The newest build of a sticky branch: never evicted. */
  sticky: boolean;
}

/** A sticky repo whose branches could not be listed in one cycle. */
export interface StickyFailure {
  repo: string;
  /** GitHub's HTTP status; null for a network error or a timeout. */
  status: number | null;
  /** Requests made in this cycle. */
  attempts: number;
  error: string;
}

/** What one sticky cycle did. */
export interface StickyHeadsResult {
  /** The builds of the sticky heads (started or found). */
  builds: string[];
  failed: StickyFailure[];
}

/** Requests for one repo's branches within a cycle when GitHub's error is transient. */
export const STICKY_LIST_ATTEMPTS = 3;
const STICKY_RETRY_DELAY_MS = 1000;

interface Listing {
  branches: { name: string; sha: string }[];
  failure?: StickyFailure;
}

/** Lists a repo's branches, asking again after a transient error; never throws. */
async function listBranches(github: GitHubClient, repo: string, ctx: Context): Promise<Listing> {
  for (let attempt = 1; ; attempt++) {
    try {
      return { branches: await github.listBranches(repo) };
    } catch (error) {
      if (attempt >= STICKY_LIST_ATTEMPTS || !isTransientGitHubError(error)) {
        return {
          branches: [],
          failure: {
            repo,
            status: error instanceof GitHubApiError ? error.status : null,
            attempts: attempt,
            error: error instanceof Error ? error.message : String(error),
          },
        };
      }
      ctx.heartbeat();
      await ctx.sleep(STICKY_RETRY_DELAY_MS * attempt);
    }
  }
}

/** Builds the activities of the fleet workflow. */
export function createFleetActivities(deps: FleetActivityDeps) {
  const { kube, namespace } = deps;
  const log = deps.logger.child({ component: 'fleet' });

  // The watcher's cache holds lean Deployments (lib/kube.ts): before it runs, a list cut the
  // same way, page by page, so the plan reads the same fields either way.
  const deploymentsNow = async (): Promise<readonly V1Deployment[]> => {
    const cached = deps.deploymentCache?.();
    if (cached) return cached;
    return (await listLeanDeployments(kube, { namespace, labelSelector: BUILD_LABEL })).items;
  };

  /** The builds as the fleet counts them, sticky ones marked. */
  const fleetMembers = (deployments: readonly V1Deployment[]): FleetBuild[] => {
    const builds = deployments.map((deployment): FleetBuild => {
      const facts = cachedBuildFacts(deployment);
      return {
        name: facts.name,
        status: facts.status,
        lastScaled: facts.lastScaled ?? facts.created ?? '',
        created: facts.created ?? '',
        repo: facts.repo,
        targetBranch: facts.targetBranch,
        pr: facts.pr,
        sticky: false,
      };
    });
    const repos = deps.repos();
    // Thousands of builds share a few branches: match each branch against the repos file once.
    const sticky = new Map<string, boolean>();
    const isSticky = (repo: string, branch: string) => {
      const key = `${repo}\u0000${branch}`;
      let found = sticky.get(key);
      if (found === undefined) {
        found = findRepoConfig(repos, repo, branch)?.sticky ?? false;
        sticky.set(key, found);
      }
      return found;
    };
    const newest = new Map<string, FleetBuild>();
    for (const build of builds) {
      if (build.pr !== null) continue;
      if (!isSticky(build.repo, build.targetBranch)) continue;
      const key = `${build.repo}\u0000${build.targetBranch}`;
      const current = newest.get(key);
      if (!current || current.created < build.created) newest.set(key, build);
    }
    for (const build of newest.values()) build.sticky = true;
    return builds;
  };

  return {
    /**
     * The builds as the cluster shows them, for the fleet's limits: status, when last scaled and
     * whether each is the newest build of a sticky branch (never evicted).
     */
    async fleetSnapshot(): Promise<FleetBuild[]> {
      return fleetMembers(await deploymentsNow());
    },

    /**
     * Plans the evictions where the builds are known (the worker's informer cache of the build
     * Deployments; a list only while it has not synced): only the names to evict cross into the
     * fleet's history, whatever the number of builds (docs/architecture.md, "The fleet").
     */
    async fleetPlan(request: FleetPlanRequest): Promise<FleetPlanResult> {
      if (request.settleMs) await Context.current().sleep(request.settleMs);
      // A change a build told is counted even when the watch has not brought it yet.
      const told = withChanges(
        fleetMembers(await deploymentsNow()),
        request.changes ?? [],
        (c) => ({
          name: c.build,
          status: c.status,
          lastScaled: c.lastScaled,
          created: c.lastScaled,
          repo: '',
          targetBranch: '',
          pr: null,
          sticky: false,
        }),
      );
      const members = told.members;
      const byName = new Map(members.map((build) => [build.name, build]));
      // An eviction asked for is not yet visible on the cluster: count it as done, so that the
      // same excess is not answered twice (once seen, or once the build is gone, it settles).
      const settled: string[] = [];
      const counted = members.slice();
      for (const [name, kind] of Object.entries(request.inFlight)) {
        const build = byName.get(name);
        const seen = kind === 'stop' ? ['stopped', 'stopping'] : ['undeploying'];
        if (!build || seen.includes(build.status)) {
          settled.push(name);
          continue;
        }
        const index = counted.indexOf(build);
        counted[index] = { ...build, status: kind === 'stop' ? 'stopping' : 'undeploying' };
      }
      const plan = planEvictions(counted, request.limits);
      return {
        ...plan,
        settled,
        ...(request.changes ? { caughtUp: told.caughtUp } : {}),
        counts: {
          deployed: members.length,
          running: members.filter((b) => b.status === 'started' || b.status === 'starting').length,
        },
      };
    },

    /**
     * Makes sure the head commit of every sticky branch of every configured repo has a build
     * (repos named literally in the repos file; their branches listed on GitHub); none without a
     * GitHub client. GitHub failing never fails the activity: each repo is tried on its own (a
     * transient error a few times), a repo that cannot be read is logged once with GitHub's
     * status and skipped, and the next cycle tries again (README, "The fleet, drift and adoption").
     */
    async ensureStickyHeads(): Promise<StickyHeadsResult> {
      const result: StickyHeadsResult = { builds: [], failed: [] };
      const github = deps.github;
      if (!github) return result;
      const ctx = Context.current();
      const repos = deps.repos();
      // Two sticky entries of one repo share one listing, and one failure.
      const listings = new Map<string, Promise<Listing>>();
      for (const entry of repos) {
        if (!entry.sticky || !/^[\w-]+\/[\w.-]+$/.test(entry.repo)) continue;
        const repo = entry.repo.toLowerCase();
        let listing = listings.get(repo);
        if (!listing) {
          listing = listBranches(github, repo, ctx);
          listings.set(repo, listing);
          const failure = (await listing).failure;
          if (failure) {
            log.warn(failure, 'sticky branches not listed');
            result.failed.push(failure);
          }
        }
        for (const branch of (await listing).branches) {
          // Only branches this entry governs: an earlier entry may claim the branch.
          if (findRepoConfig(repos, repo, branch.name) !== entry) continue;
          const commit = { repo, targetBranch: branch.name, pr: null, gitCommit: branch.sha };
          try {
            result.builds.push(await deps.ensureBuild(commit));
          } catch (error) {
            log.warn({ ...commit, err: error }, 'sticky head not built');
          }
          ctx.heartbeat();
        }
      }
      return result;
    },
  };
}
