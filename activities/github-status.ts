/**
 * What a pull request shows of its builds (docs/operations.md, "GitHub"): the commit status `runboat/build`
 * (always, for runboat compatibility), a GitHub deployment per build in a transient preview
 * environment named after its branch or pull request, whose status follows the build (queued, in
 * progress, success with the live URL, failure with the log, inactive once undeployed), and, as a
 * GitHub App, a check run per build with Start, Stop and Reset buttons.
 *
 * The ids of deployments and check runs are remembered by the worker and found again on GitHub
 * after a restart (a deployment by its environment, commit and `payload.build`; a check run by its
 * commit, name and external id), so that each build has one of each.
 */
import type { BuildRef } from '../domain/build.js';
import type {
  CheckRunAction,
  CheckRunState,
  CommitStatusState,
  DeploymentState,
  GitHubClient,
} from '../lib/github.js';
import type { Logger } from '../lib/logger.js';

/** Where a build is, as GitHub is told. */
export type BuildPhase = 'queued' | 'building' | 'initializing' | 'ready' | 'failed' | 'undeployed';

/** The link a report carries. */
export type ReportLink = 'live' | 'build' | 'init-log' | 'build-log';

/** The name of the check run of every build; also the name its buttons are known by. */
export const CHECK_RUN_NAME = 'runboat';

/** The buttons of a check run; the identifiers are the transitions they ask for. */
const BUTTONS: Record<'start' | 'stop' | 'reset', CheckRunAction> = {
  start: { label: 'Start', description: 'Start the preview', identifier: 'start' },
  stop: { label: 'Stop', description: 'Stop the preview', identifier: 'stop' },
  reset: { label: 'Reset', description: 'Initialize it again from scratch', identifier: 'reset' },
};

/** Options of {@link createGitHubReporter}. */
export interface GitHubReporterOptions {
  github: GitHubClient | undefined;
  /** Create a GitHub deployment per build and keep its status current. */
  deployments: boolean;
  /** Keep a check run with buttons per build (GitHub App only). */
  checkRuns: boolean;
  baseUrl: string;
  buildDomain: string;
  logger: Logger;
}

/**
 * The environment of a build's deployment: one per branch or pull request, so that a newer
 * commit's success marks the older one's deployment inactive (GitHub does that per environment).
 */
export function previewEnvironment(build: BuildRef): string {
  const { commit } = build;
  const name =
    commit.pr === null ? `runboat/${commit.targetBranch}` : `runboat/pr-${String(commit.pr)}`;
  return name.slice(0, 255);
}

/** The phase a commit status stands for (the build workflow reports by commit status). */
export function phaseOfStatus(state: CommitStatusState, description: string): BuildPhase {
  if (state === 'success') return 'ready';
  if (state === 'failure' || state === 'error') return 'failed';
  if (description === 'building image') return 'building';
  if (description === 'initializing') return 'initializing';
  return 'queued';
}

const DEPLOYMENT_STATE: Record<BuildPhase, DeploymentState> = {
  queued: 'queued',
  building: 'in_progress',
  initializing: 'in_progress',
  ready: 'success',
  failed: 'failure',
  undeployed: 'inactive',
};

/** Reports builds to GitHub; each call is best effort for what is beyond the commit status. */
export function createGitHubReporter(options: GitHubReporterOptions) {
  const { github } = options;
  const log = options.logger.child({ component: 'github-status' });
  const deploymentIds = new Map<string, Promise<number>>();
  const checkRunIds = new Map<string, Promise<number | undefined>>();
  const checkRuns = options.checkRuns && github?.isApp === true;

  const urls = (build: BuildRef) => ({
    live: `https://${build.slug}.${options.buildDomain}`,
    build: `${options.baseUrl}/builds/${encodeURIComponent(build.name)}`,
    'init-log': `${options.baseUrl}/api/v1/builds/${encodeURIComponent(build.name)}/init-log`,
    'build-log': `${options.baseUrl}/api/v1/builds/${encodeURIComponent(build.name)}/build-log`,
  });

  /** The build's deployment, found or created once per worker (a failure is asked again). */
  const deploymentOf = (client: GitHubClient, build: BuildRef): Promise<number> => {
    const key = build.name;
    let id = deploymentIds.get(key);
    if (!id) {
      id = (async () => {
        const environment = previewEnvironment(build);
        const { repo, gitCommit: sha } = build.commit;
        const found = await client.findDeployments(repo, sha, environment);
        const mine = found.find((deployment) => deployment.build === build.name);
        if (mine) return mine.id;
        return client.createDeployment({
          repo,
          sha,
          environment,
          description: `runboat preview ${build.name}`,
          payload: { build: build.name },
        });
      })();
      id.catch(() => deploymentIds.delete(key));
      deploymentIds.set(key, id);
    }
    return id;
  };

  /** The build's check run, if one exists; found on GitHub once per worker. */
  const checkRunOf = (client: GitHubClient, build: BuildRef): Promise<number | undefined> => {
    let id = checkRunIds.get(build.name);
    if (!id) {
      id = client
        .findCheckRuns(build.commit.repo, build.commit.gitCommit, CHECK_RUN_NAME)
        .then((runs) => runs.find((run) => run.externalId === build.name)?.id);
      id.catch(() => checkRunIds.delete(build.name));
      checkRunIds.set(build.name, id);
    }
    return id;
  };

  const checkRunState = (
    build: BuildRef,
    phase: BuildPhase,
    description: string,
    link: string,
  ): CheckRunState => {
    const base = {
      name: CHECK_RUN_NAME,
      externalId: build.name,
      detailsUrl: urls(build).build,
    };
    const { live } = urls(build);
    switch (phase) {
      case 'queued':
        return { ...base, status: 'queued', title: 'Queued', summary: description, actions: [] };
      case 'building':
      case 'initializing':
        return {
          ...base,
          status: 'in_progress',
          title: phase === 'building' ? 'Building the image' : 'Initializing',
          summary: `${description}: ${link}`,
          actions: [],
        };
      case 'ready':
        return {
          ...base,
          status: 'completed',
          conclusion: 'success',
          title: 'Ready',
          summary: `The preview is ready at ${live}; start, stop or reset it with the buttons.`,
          actions: [BUTTONS.start, BUTTONS.stop, BUTTONS.reset],
        };
      case 'failed':
        return {
          ...base,
          status: 'completed',
          conclusion: 'failure',
          title: 'Failed',
          summary: `${description}\n\nLog: ${link}`,
          actions: [BUTTONS.reset],
        };
      case 'undeployed':
        return {
          ...base,
          status: 'completed',
          conclusion: 'neutral',
          title: 'Undeployed',
          summary: 'The preview was undeployed.',
          actions: [],
        };
    }
  };

  const reportDeployment = async (
    client: GitHubClient,
    build: BuildRef,
    phase: BuildPhase,
    description: string,
    logUrl: string,
  ) => {
    // An undeployed build that never had a deployment gets none now.
    if (phase === 'undeployed' && !deploymentIds.has(build.name)) {
      const found = await client.findDeployments(
        build.commit.repo,
        build.commit.gitCommit,
        previewEnvironment(build),
      );
      if (!found.some((deployment) => deployment.build === build.name)) return;
    }
    const id = await deploymentOf(client, build);
    await client.postDeploymentStatus(build.commit.repo, id, {
      state: DEPLOYMENT_STATE[phase],
      description,
      ...(phase === 'ready' ? { environmentUrl: urls(build).live } : {}),
      ...(phase === 'undeployed' ? {} : { logUrl }),
    });
    if (phase === 'undeployed') deploymentIds.delete(build.name);
  };

  const reportCheckRun = async (
    client: GitHubClient,
    build: BuildRef,
    phase: BuildPhase,
    description: string,
    link: string,
  ) => {
    const run = checkRunState(build, phase, description, link);
    const existing = await checkRunOf(client, build);
    if (existing !== undefined) {
      await client.updateCheckRun(build.commit.repo, existing, run);
    } else if (phase !== 'undeployed') {
      const id = client.createCheckRun(build.commit.repo, build.commit.gitCommit, run);
      checkRunIds.set(build.name, id);
      id.catch(() => checkRunIds.delete(build.name));
      await id;
    }
    if (phase === 'undeployed') checkRunIds.delete(build.name);
  };

  /** Runs one GitHub report; a failure is logged, never the build's failure. */
  const bestEffort = async (what: string, build: BuildRef, report: () => Promise<void>) => {
    try {
      await report();
    } catch (error) {
      log.warn({ build: build.name, err: error }, `${what} not reported`);
    }
  };

  return {
    /**
     * Reports a build's phase: the commit status (its failure is the caller's: the workflow logs
     * it), then the deployment status and the check run.
     */
    async report(
      build: BuildRef,
      phase: BuildPhase,
      state: CommitStatusState | undefined,
      description: string,
      link: ReportLink,
    ): Promise<void> {
      if (!github) return;
      const targetUrl = urls(build)[link];
      const extras: Promise<void>[] = [];
      if (options.deployments) {
        extras.push(
          bestEffort('deployment status', build, () =>
            // The live URL is the environment's; the log of a ready build is its page.
            reportDeployment(
              github,
              build,
              phase,
              description,
              link === 'live' ? urls(build).build : targetUrl,
            ),
          ),
        );
      }
      if (checkRuns) {
        extras.push(
          bestEffort('check run', build, () =>
            reportCheckRun(github, build, phase, description, targetUrl),
          ),
        );
      }
      try {
        if (state) {
          await github.postCommitStatus({
            repo: build.commit.repo,
            sha: build.commit.gitCommit,
            state,
            description,
            targetUrl,
          });
        }
      } finally {
        await Promise.all(extras);
      }
    },
  };
}

/** The reporter of {@link createGitHubReporter}. */
export type GitHubReporter = ReturnType<typeof createGitHubReporter>;
