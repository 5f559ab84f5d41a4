/**
 * The polling trigger (docs/operations.md, "Polling"): one repo's branches and open pull requests
 * read from GitHub with conditional requests, a build of each head the repos file matches, and an
 * undeploy of the builds of branches deleted and pull requests closed. It is what the webhook does,
 * found by looking instead of being told, so the two agree: the same build names, the same undeploy
 * update. Built by `createPollActivities(deps)`, joined in `activities/index.ts`.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { V1Deployment } from '@kubernetes/client-node';
import { BUILD_LABEL, type CommitInfo } from '../domain/build.js';
import { cachedBuildFacts } from '../domain/build-view.js';
import { buildName } from '../domain/names.js';
import { isTransientGitHubError } from '../lib/github.js';
import { findRepoConfig } from '../lib/settings.js';
import type { ActivityDeps } from './index.js';

/** What the poll activity needs from the process that runs it. */
export type PollActivityDeps = Pick<
  ActivityDeps,
  | 'kube'
  | 'namespace'
  | 'buildDomain'
  | 'repos'
  | 'github'
  | 'logger'
  | 'deploymentCache'
  | 'startPolledBuild'
  | 'undeployBuild'
>;

/** What one poll of a repo did. */
export interface PollResult {
  repo: string;
  branches: number;
  pullRequests: number;
  /** Heads the repos file matches. */
  heads: number;
  /** Builds started by this poll (a delivery missed, or no webhook at all). */
  started: string[];
  /** Builds of deleted branches and closed pull requests undeployed by this poll. */
  undeployed: string[];
  /** Milliseconds the poll took. */
  ms: number;
}

/** Builds the polling activity. */
export function createPollActivities(deps: PollActivityDeps) {
  const log = deps.logger.child({ component: 'poll' });
  /**
   * Build names this worker has already made sure of, per repo: an unchanged head costs nothing
   * on the next poll. Memory of the worker, like the client's ETags: a restarted worker checks
   * each head once more (docs/operations.md, "Polling").
   */
  const ensured = new Map<string, Set<string>>();

  const deploymentsNow = async (): Promise<readonly V1Deployment[]> => {
    const cached = deps.deploymentCache?.();
    if (cached) return cached;
    const list = await deps.kube.apps.listNamespacedDeployment({
      namespace: deps.namespace,
      labelSelector: BUILD_LABEL,
    });
    return list.items;
  };

  return {
    /**
     * Polls one repo: a build of each new head its entry matches (never again a build that ran
     * and was undeployed), an undeploy of each build whose branch or pull request is gone.
     */
    async pollRepo(input: { repo: string }): Promise<PollResult> {
      const started = Date.now();
      const repo = input.repo.toLowerCase();
      const result: PollResult = {
        repo,
        branches: 0,
        pullRequests: 0,
        heads: 0,
        started: [],
        undeployed: [],
        ms: 0,
      };
      const github = deps.github;
      if (!github) return result;
      const ctx = Context.current();
      let branches: Awaited<ReturnType<typeof github.listBranches>>;
      let pulls: Awaited<ReturnType<typeof github.listOpenPullRequests>>;
      try {
        [branches, pulls] = await Promise.all([
          github.listBranches(repo),
          github.listOpenPullRequests(repo),
        ]);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        log.warn({ repo, err: message }, 'repo not polled');
        // A 401, 403 or 404 only an operator can fix: the next scheduled poll tries again.
        if (!isTransientGitHubError(error)) throw ApplicationFailure.nonRetryable(message);
        throw error;
      }
      result.branches = branches.length;
      result.pullRequests = pulls.length;
      ctx.heartbeat();

      const repos = deps.repos();
      const heads: CommitInfo[] = [];
      for (const branch of branches) {
        if (!findRepoConfig(repos, repo, branch.name)) continue;
        heads.push({ repo, targetBranch: branch.name, pr: null, gitCommit: branch.sha });
      }
      for (const pull of pulls) {
        if (!findRepoConfig(repos, repo, pull.baseRef)) continue;
        heads.push({
          repo,
          targetBranch: pull.baseRef,
          pr: pull.number,
          gitCommit: pull.sha,
          headRepo: pull.headRepo,
        });
      }
      result.heads = heads.length;

      const deployments = await deploymentsNow();
      const builds = deployments
        .map((deployment) => cachedBuildFacts(deployment))
        .filter((facts) => facts.repo === repo);
      const deployed = new Set(builds.map((facts) => facts.name));
      const known = ensured.get(repo) ?? new Set<string>();
      const current = new Set<string>();
      for (const commit of heads) {
        const name = buildName(commit);
        current.add(name);
        if (known.has(name) || deployed.has(name)) continue;
        try {
          if (await deps.startPolledBuild?.(commit)) result.started.push(name);
        } catch (error) {
          log.warn({ ...commit, build: name, err: error }, 'polled head not built');
          current.delete(name);
        }
        ctx.heartbeat();
      }
      ensured.set(repo, current);

      // Gone from GitHub: a branch deleted, a pull request closed or merged.
      const branchNames = new Set(branches.map((branch) => branch.name));
      const openPulls = new Set(pulls.map((pull) => pull.number));
      for (const build of builds) {
        if (build.status === 'undeploying') continue;
        const { pr, targetBranch: branch } = build;
        const gone = pr === null ? !branchNames.has(branch) : !openPulls.has(pr);
        if (!gone || !deps.undeployBuild) continue;
        try {
          await deps.undeployBuild(build.name);
          result.undeployed.push(build.name);
        } catch (error) {
          log.warn({ repo, build: build.name, err: error }, 'build of a gone head not undeployed');
        }
        ctx.heartbeat();
      }
      result.ms = Date.now() - started;
      const level = result.started.length || result.undeployed.length ? 'info' : 'debug';
      log[level](result, 'repo polled');
      return result;
    },
  };
}
