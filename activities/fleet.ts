/**
 * The fleet's I/O: the builds as the cluster shows them (for `MAX_STARTED` / `MAX_DEPLOYED`) and
 * the sticky branch heads read from GitHub. Built by `createFleetActivities(deps)`, joined with the
 * other activities in `activities/index.ts`.
 */
import { BUILD_LABEL, type BuildStatus } from '../domain/build.js';
import { buildView } from '../domain/build-view.js';
import { findRepoConfig } from '../lib/settings.js';
import type { ActivityDeps } from './index.js';

/** What the fleet activities need from the process that runs them. */
export type FleetActivityDeps = Pick<
  ActivityDeps,
  'kube' | 'namespace' | 'buildDomain' | 'repos' | 'github' | 'logger' | 'ensureBuild'
>;

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

/** Builds the activities of the fleet workflow. */
export function createFleetActivities(deps: FleetActivityDeps) {
  const { kube, namespace } = deps;
  return {
    /**
     * The builds as the cluster shows them, for the fleet's limits: status, when last scaled and
     * whether each is the newest build of a sticky branch (never evicted).
     */
    async fleetSnapshot(): Promise<FleetBuild[]> {
      const list = await kube.apps.listNamespacedDeployment({
        namespace,
        labelSelector: BUILD_LABEL,
      });
      const builds = list.items.map((deployment) => {
        const view = buildView(deployment, deps.buildDomain);
        return {
          name: view.name,
          status: view.status,
          lastScaled: view.last_scaled ?? view.created ?? '',
          created: view.created ?? '',
          repo: view.commit_info.repo,
          targetBranch: view.commit_info.target_branch,
          pr: view.commit_info.pr,
          sticky: false,
        };
      });
      const repos = deps.repos();
      const newest = new Map<string, FleetBuild>();
      for (const build of builds) {
        if (build.pr !== null) continue;
        if (!findRepoConfig(repos, build.repo, build.targetBranch)?.sticky) continue;
        const key = `${build.repo}\u0000${build.targetBranch}`;
        const current = newest.get(key);
        if (!current || current.created < build.created) newest.set(key, build);
      }
      for (const build of newest.values()) build.sticky = true;
      return builds;
    },

    /**
     * Makes sure the head commit of every sticky branch of every configured repo has a build
     * (repos named literally in the repos file; their branches listed on GitHub). Returns the
     * builds it asked for; none without a GitHub client.
     */
    async ensureStickyHeads(): Promise<string[]> {
      if (!deps.github) return [];
      const repos = deps.repos();
      const names: string[] = [];
      for (const entry of repos) {
        if (!entry.sticky || !/^[\w-]+\/[\w.-]+$/.test(entry.repo)) continue;
        const repo = entry.repo.toLowerCase();
        for (const branch of await deps.github.listBranches(repo)) {
          // Only branches this entry governs: an earlier entry may claim the branch.
          if (findRepoConfig(repos, repo, branch.name) !== entry) continue;
          names.push(
            await deps.ensureBuild({
              repo,
              targetBranch: branch.name,
              pr: null,
              gitCommit: branch.sha,
            }),
          );
        }
      }
      return names;
    },
  };
}
