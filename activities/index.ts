/**
 * All I/O of the build workflow: resolve a build's configuration, render and apply its kubefiles,
 * mirror its state onto its Deployment, scale it, run its Jobs, delete it, and report commit
 * statuses. Built by `createActivities(deps)`; workflows import the type only.
 * How kubefiles are rendered and applied: docs/kubefiles.md; failures: docs/failures.md.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  PatchStrategy,
  type KubernetesObject,
  type V1Deployment,
  type V1Job,
  type V1Pod,
} from '@kubernetes/client-node';
import {
  annotations,
  commitNote,
  BUILD_LABEL,
  CLEANUP_FINALIZER,
  JOB_KIND_LABEL,
  STATUS_LABEL,
  isFromFork,
  type BuildRef,
  type BuildSource,
  type BuildStatus,
  type CommitInfo,
  type InitStatus,
  type JobKind,
  type ResolvedBuild,
} from '../domain/build.js';
import { noBuildMetrics, type BuildMetrics } from '../lib/build-metrics.js';
import type { CommitStatusState, GitHubClient } from '../lib/github.js';
import {
  applyManifests,
  describeKubeError,
  FIELD_MANAGER,
  isKubeStatus,
  isRetryableKubeError,
  kubeStatus,
  mergePatch,
  type KubeClients,
} from '../lib/kube.js';
import {
  defaultKubefilesDir,
  KubefilesError,
  renderKubefiles,
  type KubefilesContext,
  type KubefilesMode,
} from '../lib/kubefiles.js';
import type { Logger } from '../lib/logger.js';
import { findRepoConfig, type RepoConfig } from '../lib/settings.js';
import { cachedBuildFacts } from '../domain/build-view.js';
import { createFleetActivities } from './fleet.js';
import { createGitHubReporter, phaseOfStatus, type ReportLink } from './github-status.js';
import { createPollActivities } from './poll.js';
import { createRedeliveryActivities } from './redeliver.js';
import { createInitSlotsActivities } from './init-slots.js';
import { mirrorAhead } from './mirror-ahead.js';
import { createImageBuildActivities, resolveImageBuild } from './image-build.js';
import {
  jobName,
  keepJobLog,
  runJob,
  scriptError,
  waitForChange,
  waitForMatch,
  type JobOutcome,
} from './jobs.js';

export type { FleetBuild } from './fleet.js';
export type { ImageBuildOutcome } from './image-build.js';

/** What the activities need from the process that runs them. */
export interface ActivityDeps {
  kube: KubeClients;
  namespace: string;
  buildDomain: string;
  /** Public URL of the runboat UI (commit status links). */
  baseUrl: string;
  /** The repos configuration, read anew at each call so that a redeploy sees changes. */
  repos: () => readonly RepoConfig[];
  /** Directory relative kubefiles paths of the repos file are resolved against. */
  reposDir: string;
  /** Where secret values are read from (the worker's environment). */
  secrets: NodeJS.ProcessEnv;
  /** Absent: commit statuses are not reported. */
  github?: GitHubClient | undefined;
  /** What the pull request shows besides the commit status (docs/operations.md, "GitHub"); default: nothing. */
  githubReports?: { deployments: boolean; checkRuns: boolean };
  /** GitHub REST API base, for the archive URL of a commit; default `https://api.github.com`. */
  githubApiUrl?: string;
  logger: Logger;
  /** Where init waits and durations, transitions and cleanup failures are counted. */
  metrics?: BuildMetrics;
  /** When a build's workflow started (the webhook or API call that asked for the build). */
  workflowStartTime?: (workflowId: string) => Promise<Date | undefined>;
  /** Tells the build workflow that its init Job is about to be created. */
  notifyInitStarted: (workflowId: string) => Promise<void>;
  /**
   * Gives a build's init slot back to the init slots workflow. Absent: only the build's workflow
   * gives it back, once the init activity has ended.
   */
  releaseInitSlot?: (build: string) => Promise<void>;
  /** Starts (or finds) the build of a commit; returns its name. */
  ensureBuild: (commit: CommitInfo) => Promise<string>;
  /**
   * Polling: starts the build of a commit, unless one of that name ever ran (undeployed or evicted
   * on purpose); true when it started one. Absent: polling builds nothing.
   */
  startPolledBuild?: (commit: CommitInfo) => Promise<boolean>;
  /** Polling: undeploys a build (its workflow's undeploy update); one already going is fine. */
  undeployBuild?: (name: string) => Promise<void>;
  /**
   * The build Deployments as the worker's informer last saw them; undefined until it has synced
   * (the fleet then lists them).
   */
  deploymentCache?: () => readonly V1Deployment[] | undefined;
  /** Asks the init slots workflow for a slot for a build (signal-with-start). */
  requestInitSlot: (build: string, ticket: number, force: boolean) => Promise<void>;
  /** Whether the workflow with this id runs (false when it ended or does not exist). */
  workflowRunning: (workflowId: string) => Promise<boolean>;
}

/** Failure types the workflow matches on (never by class across the sandbox). */
export const failureTypes = {
  unsupportedRepo: 'UnsupportedRepo',
  kubernetesRejected: 'KubernetesRejected',
  kubefilesInvalid: 'KubefilesInvalid',
  missingSecret: 'MissingSecret',
  cleanupFailed: 'CleanupFailed',
} as const;

/** Turns errors that retrying cannot fix into non-retryable failures with a type. */
async function guard<T>(what: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof ApplicationFailure) throw error;
    if (error instanceof KubefilesError) {
      throw ApplicationFailure.nonRetryable(
        `${what}: ${error.message}`,
        failureTypes.kubefilesInvalid,
      );
    }
    if (kubeStatus(error) !== undefined && !isRetryableKubeError(error)) {
      throw ApplicationFailure.nonRetryable(
        `${what}: ${describeKubeError(error)}`,
        failureTypes.kubernetesRejected,
      );
    }
    throw error;
  }
}

/** Splits `name:tag` (a registry port is not a tag). */
function splitImage(image: string): { name: string; tag: string } {
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  if (colon > slash) return { name: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { name: image, tag: 'latest' };
}

/** Builds the activities of the build workflow. */
export function createActivities(deps: ActivityDeps) {
  const { kube, namespace } = deps;
  const log = deps.logger.child({ component: 'activities' });
  const metrics = deps.metrics ?? noBuildMetrics;

  const secretValues = (config: ResolvedBuild): Record<string, string> => {
    const values: Record<string, string> = {};
    for (const [name, variable] of Object.entries(config.secretEnvFrom)) {
      const value = deps.secrets[variable];
      if (value === undefined) {
        throw ApplicationFailure.nonRetryable(
          `secret env ${name}: the worker has no environment variable ${variable}`,
          failureTypes.missingSecret,
        );
      }
      values[name] = value;
    }
    return values;
  };

  const render = async (
    build: BuildRef,
    config: ResolvedBuild,
    mode: KubefilesMode,
    job?: string,
  ): Promise<KubernetesObject[]> => {
    const context: KubefilesContext = {
      namespace,
      mode,
      buildName: build.name,
      buildSlug: build.slug,
      buildDomain: deps.buildDomain,
      commit: {
        repo: build.commit.repo,
        targetBranch: build.commit.targetBranch,
        pr: build.commit.pr,
        sha: build.commit.gitCommit,
        headRepo: build.commit.headRepo ?? null,
        message: commitNote(build.commit.message),
        author: commitNote(build.commit.author),
      },
      source: config.source ?? sourceOf(build, null),
      image: config.image,
      env: config.env,
      secretEnv: secretValues(config),
      templateVars: config.templateVars,
      imageBuild: config.imageBuild ?? null,
      ...(job === undefined ? {} : { job: { name: job } }),
    };
    const manifests = (await renderKubefiles(config.kubefilesDir, context)) as KubernetesObject[];
    // Without a namespace the API client would use `default`: every object goes to the builds'.
    for (const manifest of manifests) manifest.metadata = { ...manifest.metadata, namespace };
    return manifests;
  };

  const patchDeployment = async (name: string, body: object): Promise<V1Deployment | undefined> => {
    try {
      return await kube.apps.patchNamespacedDeployment({ name, namespace, body }, mergePatch);
    } catch (error) {
      if (isKubeStatus(error, 404)) return undefined;
      throw error;
    }
  };

  /** Mirror of a transition on the Deployment: the status label and the runboat annotations. */
  const mirrorOnDeployment = async (name: string, mirror: Mirror) => {
    const patched = await patchDeployment(name, {
      metadata: {
        labels: mirror.status ? { [STATUS_LABEL]: mirror.status } : {},
        annotations: {
          ...(mirror.initStatus ? { [annotations.initStatus]: mirror.initStatus } : {}),
          ...(mirror.failureReason !== undefined
            ? { [annotations.failureReason]: mirror.failureReason }
            : {}),
          ...(mirror.cleanupStatus !== undefined
            ? { [annotations.cleanupStatus]: mirror.cleanupStatus }
            : {}),
          ...(mirror.imageStatus ? { [annotations.imageStatus]: mirror.imageStatus } : {}),
        },
      },
    });
    if (patched && mirror.status) metrics.transition(mirror.status);
    return patched;
  };

  const reporter = createGitHubReporter({
    github: deps.github,
    deployments: deps.githubReports?.deployments ?? false,
    checkRuns: deps.githubReports?.checkRuns ?? false,
    baseUrl: deps.baseUrl,
    buildDomain: deps.buildDomain,
    logger: deps.logger,
  });

  /** The one Job of a kind the kubefiles render for a build, named `name`. */
  const renderJob = async (
    build: BuildRef,
    config: ResolvedBuild,
    kind: JobKind,
    name: string,
  ): Promise<V1Job> => {
    const [job] = (await render(build, config, kind, name)) as V1Job[];
    if (!job) {
      throw ApplicationFailure.nonRetryable(
        `no ${kind} Job rendered`,
        failureTypes.kubefilesInvalid,
      );
    }
    return job;
  };

  const deleteJob = async (name: string) => {
    await kube.batch
      .deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' })
      .catch((error: unknown) => {
        if (!isKubeStatus(error, 404)) throw error;
      });
  };

  /**
   * Runs the Job to its end and keeps its log. Cancelled (a reset or an undeploy), it deletes the
   * Job it created before it ends, so that the workflow, which waits for that, never sees two
   * Jobs of one kind at once (docs/failures.md).
   */
  const runBuildJob = async (
    build: BuildRef,
    kind: JobKind,
    job: V1Job,
    onEnded?: (outcome: JobOutcome) => Promise<unknown>,
  ): Promise<JobOutcome> => {
    const ctx = Context.current();
    let outcome: JobOutcome;
    try {
      outcome = await runJob({
        kube,
        namespace,
        build: build.name,
        kind,
        job,
        heartbeat: (details) => ctx.heartbeat(details),
        signal: ctx.cancellationSignal,
      });
    } catch (error) {
      // Only a cancellation the workflow asked for (a reset, an undeploy) ends the Job. A run
      // that is gone (terminated, lost with Temporal's database) leaves it to the workflow that
      // adopts the build, which takes the running Job over.
      if (ctx.cancellationSignal.aborted && ctx.cancellationDetails?.cancelRequested) {
        await deleteJob(job.metadata?.name ?? '');
        log.info({ build: build.name, job: job.metadata?.name }, `${kind} cancelled: Job deleted`);
      }
      throw error;
    }
    log.info({ build: build.name, job: outcome.jobName, ...outcome }, `${kind} Job ended`);
    // Done before this activity ends, so that whatever the workflow does next comes after it.
    const [jobLog] = await Promise.all([
      keepJobLog(kube, namespace, build.name, kind, outcome),
      onEnded?.(outcome),
    ]);
    // What the script said is the root cause; the Job's condition only says that it failed.
    const said = outcome.succeeded ? null : scriptError(jobLog);
    return said ? { ...outcome, reason: `${said} (${outcome.reason ?? 'Job failed'})` } : outcome;
  };

  /**
   * The cleanup Job is rendered when the build is deployed and kept in a Secret of the build (it
   * may hold secret values): a build whose repo left the repos file, or whose kubefiles changed
   * or vanished, is still cleaned up the way it was deployed. Adopted builds carry it too.
   */
  const cleanupRecordName = (build: string) => `${build}-cleanup-job`;

  const recordCleanupJob = async (build: BuildRef, config: ResolvedBuild) => {
    const job = await renderJob(build, config, 'cleanup', jobName(build.name, 'cleanup', 0));
    const record: KubernetesObject & { data: Record<string, string>; type: string } = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: cleanupRecordName(build.name),
        namespace,
        labels: { [BUILD_LABEL]: build.name, [JOB_KIND_LABEL]: 'cleanup' },
      },
      data: { 'job.json': Buffer.from(JSON.stringify(job)).toString('base64') },
    };
    await kube.objects.patch(
      record,
      undefined,
      undefined,
      FIELD_MANAGER,
      true,
      PatchStrategy.ServerSideApply,
    );
  };

  const recordedCleanupJob = async (build: string): Promise<V1Job | undefined> => {
    try {
      const secret = await kube.core.readNamespacedSecret({
        name: cleanupRecordName(build),
        namespace,
      });
      const data = secret.data?.['job.json'];
      return data ? (JSON.parse(Buffer.from(data, 'base64').toString()) as V1Job) : undefined;
    } catch (error) {
      if (isKubeStatus(error, 404)) return undefined;
      throw error;
    }
  };

  /** The cleanup Job from the first source that has one (see `cleanup`). */
  const cleanupJob = async (
    build: BuildRef,
    config: ResolvedBuild | null,
    name: string,
  ): Promise<V1Job> => {
    const sources = [() => resolveBuildConfig(build), ...(config ? [() => config] : [])];
    let failure: unknown;
    for (const source of sources) {
      try {
        return await renderJob(build, source(), 'cleanup', name);
      } catch (error) {
        failure ??= error;
      }
    }
    const recorded = await recordedCleanupJob(build.name);
    if (!recorded) throw failure;
    log.info({ build: build.name }, 'cleanup from the Job recorded at deploy time');
    return { ...recorded, metadata: { ...recorded.metadata, name, namespace } };
  };

  /**
   * Applies a build's `deployment` objects (server-side apply, every dry run before any apply, as
   * `applyManifests`) and records its cleanup Job. The objects do not depend on each other (the
   * Deployment has no replicas yet), so each step sends its requests at once: the Deployment
   * exists after two round trips to the API server, not one per object.
   */
  const applyAtOnce = async (
    rendered: Promise<KubernetesObject[]>,
    build: BuildRef,
    config: ResolvedBuild,
  ): Promise<void> => {
    const manifests = await rendered;
    const apply = (manifest: KubernetesObject, dryRun: 'All' | undefined) =>
      kube.objects.patch(
        manifest,
        undefined,
        dryRun,
        FIELD_MANAGER,
        true,
        PatchStrategy.ServerSideApply,
      );
    await Promise.all(manifests.map((manifest) => apply(manifest, 'All')));
    await Promise.all([
      ...manifests.map((manifest) => apply(manifest, undefined)),
      recordCleanupJob(build, config),
    ]);
  };

  /**
   * Where the scripts fetch the commit from. A pull request from a fork is not trusted unless its
   * repo entry says `trustForks`: it gets no clone token (nor secret env, below).
   */
  const sourceOf = (build: BuildRef, entry: RepoConfig | null): BuildSource => {
    const { repo, gitCommit } = build.commit;
    const options = entry?.builds[0]?.source;
    const trusted = (entry?.trustForks ?? false) || !isFromFork(build.commit);
    const apiUrl = (deps.githubApiUrl ?? 'https://api.github.com').replace(/\/+$/, '');
    return {
      fetch: options?.fetch ?? 'auto',
      install: options?.install ?? 'addons-path',
      addons: (options?.addons ?? []).join(','),
      url: options?.url ?? `https://github.com/${repo}.git`,
      tarballUrl: `${apiUrl}/repos/${repo}/tarball/${gitCommit}`,
      cloneToken: trusted && entry?.cloneToken ? { ...entry.cloneToken } : null,
      trusted,
    };
  };

  /** Scales a build's Deployment and labels its status; its last-scaled time, null when gone. */
  const scaleDeployment = async (
    name: string,
    replicas: number,
    status: BuildStatus,
  ): Promise<string | null> => {
    const now = new Date().toISOString();
    const patched = await guard('scale', () =>
      patchDeployment(name, {
        spec: { replicas },
        metadata: {
          labels: { [STATUS_LABEL]: status },
          annotations: { [annotations.lastScaled]: now },
        },
      }),
    );
    if (patched) metrics.transition(status);
    return patched ? now : null;
  };

  /** Finds the repo's build configuration; an unsupported repo or branch is non-retryable. */
  const resolveBuildConfig = (build: BuildRef): ResolvedBuild => {
    const { repo, targetBranch } = build.commit;
    const entry = findRepoConfig(deps.repos(), repo, targetBranch);
    const config = entry?.builds[0];
    if (!config) {
      throw ApplicationFailure.nonRetryable(
        `${repo} ${targetBranch}: no build configured for this repo and branch`,
        failureTypes.unsupportedRepo,
      );
    }
    const kubefiles = config.kubefiles;
    const kubefilesDir = kubefiles
      ? isAbsolute(kubefiles)
        ? kubefiles
        : resolve(deps.reposDir, kubefiles)
      : defaultKubefilesDir;
    const source = sourceOf(build, entry);
    const imageBuild = config.imageBuild && resolveImageBuild(build.commit, config.imageBuild);
    return {
      // With an image build, the init Job and the Deployment run the image it builds.
      image: splitImage(imageBuild ? imageBuild.ref : (config.image ?? '')),
      env: config.env,
      // A fork's pull request could print them: withheld unless the repo entry trusts forks,
      // but for those the app cannot run without.
      secretEnvFrom: source.trusted
        ? config.secretEnv
        : Object.fromEntries(
            Object.entries(config.secretEnv).filter(([name]) =>
              config.secretEnvForForks.includes(name),
            ),
          ),
      templateVars: config.templateVars,
      kubefilesDir,
      deployLink: `https://${build.slug}.${deps.buildDomain}`,
      source,
      // Known now, so that a start or stop without a hook costs no activity.
      hooks: {
        start: existsSync(join(kubefilesDir, 'start.yaml.njk')),
        stop: existsSync(join(kubefilesDir, 'stop.yaml.njk')),
      },
      ...(imageBuild ? { imageBuild } : {}),
    };
  };

  return {
    ...createFleetActivities(deps),
    ...createPollActivities(deps),
    ...createRedeliveryActivities(deps),
    ...createInitSlotsActivities(deps),
    ...createImageBuildActivities(deps, { renderJob, runBuildJob, guard }),

    /** Finds the repo's build configuration; an unsupported repo or branch is non-retryable. */
    async resolveBuildConfig(build: BuildRef): Promise<ResolvedBuild> {
      return Promise.resolve(resolveBuildConfig(build));
    },

    /**
     * Applies the `deployment` mode (Deployment at 0 replicas, Service, Ingress…) and records the
     * build's cleanup Job, rendered now, for its undeploy.
     */
    async deploy(build: BuildRef, config: ResolvedBuild): Promise<void> {
      await guard('deploy', () => applyAtOnce(render(build, config, 'deployment'), build, config));
      metrics.transition('todo');
      // Deploy runs once, in a new build's first run: its workflow started when it was asked for.
      const applied = Date.now();
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? build.name;
      void deps
        .workflowStartTime?.(workflowId)
        .then((started) => started && metrics.deployed((applied - started.getTime()) / 1000))
        .catch((error: unknown) => log.warn({ build: build.name, err: error }, 'deploy latency'));
    },

    /**
     * The other builds of the same repo and branch (or PR) created before this one whose init
     * has not started: what a newer commit supersedes.
     */
    async queuedSiblings(build: BuildRef): Promise<string[]> {
      // The worker's informer cache when it has one: a deploy lists nothing from the API server.
      const items =
        deps.deploymentCache?.() ??
        (await kube.apps.listNamespacedDeployment({ namespace, labelSelector: BUILD_LABEL })).items;
      const self = items.find((d) => d.metadata?.name === build.name);
      const created = cachedBuildFacts(self ?? {}).created ?? '';
      return items
        .map((deployment) => cachedBuildFacts(deployment))
        .filter(
          (facts) =>
            facts.name !== build.name &&
            facts.status === 'todo' &&
            facts.repo === build.commit.repo &&
            facts.targetBranch === build.commit.targetBranch &&
            facts.pr === build.commit.pr &&
            (facts.created ?? '') < created,
        )
        .map((facts) => facts.name);
    },

    /** Applies the optional `start` or `stop` mode of the kubefiles; false when there is none. */
    async applyHook(
      build: BuildRef,
      config: ResolvedBuild,
      mode: 'start' | 'stop',
    ): Promise<boolean> {
      return guard(mode, async () => {
        const manifests = await render(build, config, mode);
        if (manifests.length > 0) await applyManifests(kube.objects, manifests);
        return manifests.length > 0;
      });
    },

    /** Writes a transition onto the Deployment. False when the Deployment is gone. */
    async mirror(name: string, mirror: Mirror): Promise<boolean> {
      return guard('mirror', async () => (await mirrorOnDeployment(name, mirror)) !== undefined);
    },

    /**
     * A start whose configuration the workflow does not hold yet (an adopted build's first): the
     * configuration, and the scale to 1 in the same local activity unless the kubefiles' start
     * hook must come first. One round trip where there were two.
     */
    async resolveAndScaleUp(
      build: BuildRef,
      status: BuildStatus,
    ): Promise<{ config: ResolvedBuild; lastScaled?: string | null }> {
      const config = resolveBuildConfig(build);
      if (config.hooks?.start !== false) return { config };
      return { config, lastScaled: await scaleDeployment(build.name, 1, status) };
    },

    /**
     * Scales the Deployment, mirrors `status` and records when; returns that time (ISO), or null
     * if it is gone.
     */
    async scale(name: string, replicas: number, status: BuildStatus): Promise<string | null> {
      return scaleDeployment(name, replicas, status);
    },

    /**
     * Waits until the build has a ready pod, shows it `started` (the workflow mirrors it again);
     * false when its Deployment is gone. The pods are watched, not the Deployment: its ready count follows a
     * pod's readiness only after the ReplicaSet and Deployment controllers have passed it on.
     */
    async awaitReady(name: string): Promise<boolean> {
      const ctx = Context.current();
      const path = `/api/v1/namespaces/${namespace}/pods`;
      const selector = `${BUILD_LABEL}=${name},!${JOB_KIND_LABEL}`;
      // Ready: the build shows `started` at once; the workflow mirrors it again after this
      // activity (activities/mirror-ahead.ts).
      const showStarted = async () => {
        await mirrorAhead(kube, namespace, name, 'starting', { status: 'started' }, log);
        return true;
      };
      for (;;) {
        try {
          const deployment = await kube.apps.readNamespacedDeploymentStatus({ name, namespace });
          if ((deployment.status?.readyReplicas ?? 0) >= 1) return showStarted();
        } catch (error) {
          if (isKubeStatus(error, 404)) return false;
          throw error;
        }
        const pods = await kube.core.listNamespacedPod({ namespace, labelSelector: selector });
        if (pods.items.some(podReady)) return showStarted();
        ctx.heartbeat();
        const rv = pods.metadata?.resourceVersion;
        const seen = await waitForMatch(
          kube,
          path,
          selector,
          rv,
          podReady,
          5000,
          ctx.cancellationSignal,
        );
        if (ctx.cancellationSignal.aborted) await ctx.cancelled;
        if (seen) return showStarted();
      }
    },

    /**
     * Runs the init Job to its end (init task queue: one slot per Job). Its first act marks the
     * build initializing; its last keeps the log. A Job complete shows the build `stopped` at
     * once; the workflow mirrors every outcome (a failure with the cause its log gives).
     */
    async initialize(
      build: BuildRef,
      config: ResolvedBuild,
      generation: number,
    ): Promise<InitOutcome> {
      const ctx = Context.current();
      // The wait for an init slot: this attempt's scheduling to its start (docs/operations.md).
      metrics.initQueueWait((Date.now() - ctx.info.currentAttemptScheduledTimestampMs) / 1000);
      // An early heartbeat, so that a cancellation reaches the activity before its Job exists.
      ctx.heartbeat();
      await guard('initialize', async () => {
        await mirrorOnDeployment(build.name, { status: 'initializing', initStatus: 'started' });
      });
      // Telling the workflow and GitHub does not hold the Job up (an init slot waits for it).
      const told = Promise.all([
        deps
          .notifyInitStarted(ctx.info.workflowExecution?.workflowId ?? build.name)
          .catch((error: unknown) => {
            log.warn({ build: build.name, err: error }, 'could not signal init start');
          }),
        reporter
          .report(build, 'initializing', 'pending', 'initializing', 'build')
          .catch((error: unknown) => log.warn({ build: build.name, err: error }, 'commit status')),
      ]);
      const outcome = await guard('initialize', async () => {
        const job = await renderJob(
          build,
          config,
          'initialize',
          jobName(build.name, 'initialize', generation),
        );
        if (ctx.cancellationSignal.aborted) await ctx.cancelled;
        const started = Date.now();
        // The Job has ended: its slot goes to the next queued init at once, not after its log
        // is kept, this activity's end and a workflow task of the build (docs/architecture.md).
        // The outcome says whether Temporal took the release: only then does the build's
        // workflow leave it out.
        let slotReleased = false;
        const releaseSlot = async () => {
          if (!deps.releaseInitSlot) return;
          try {
            await deps.releaseInitSlot(build.name);
            slotReleased = true;
          } catch (error) {
            log.warn({ build: build.name, err: error }, 'init slot not released early');
          }
        };
        // Complete: the build shows `stopped` at once, not after its log is kept, this
        // activity's end and a workflow task (activities/mirror-ahead.ts).
        const showStopped = async (ended: JobOutcome) => {
          if (!ended.succeeded || ctx.cancellationSignal.aborted) return;
          await mirrorAhead(
            kube,
            namespace,
            build.name,
            'initializing',
            {
              status: 'stopped',
              initStatus: 'succeeded',
              failureReason: '',
            },
            log,
          );
        };
        try {
          const ended = await runBuildJob(build, 'initialize', job, (ended) =>
            Promise.all([releaseSlot(), showStopped(ended)]),
          );
          metrics.initEnded(
            (Date.now() - started) / 1000,
            ended.succeeded ? 'succeeded' : 'failed',
          );
          return { ...ended, slotReleased };
        } catch (error) {
          metrics.initEnded((Date.now() - started) / 1000, 'error');
          throw error;
        }
      });
      await told;
      if (ctx.cancellationSignal.aborted) await ctx.cancelled;
      return outcome;
    },

    /**
     * Runs one cleanup attempt: a fresh Job named by `generation`, rendered with the repos file
     * as it is now (an operator may have fixed it), else with `config` (what the build was
     * deployed with), else the Job recorded at deploy time. A failed Job is a non-retryable
     * `CleanupFailed`: the workflow decides about further attempts.
     */
    async cleanup(
      build: BuildRef,
      config: ResolvedBuild | null,
      generation: number,
    ): Promise<JobOutcome> {
      const outcome = await guard('cleanup', async () => {
        const name = jobName(build.name, 'cleanup', generation);
        return runBuildJob(build, 'cleanup', await cleanupJob(build, config, name));
      });
      if (!outcome.succeeded) {
        metrics.cleanupFailed();
        throw ApplicationFailure.nonRetryable(
          `cleanup Job ${outcome.jobName} failed: ${outcome.reason ?? 'unknown'}`,
          failureTypes.cleanupFailed,
        );
      }
      // The database is gone: the pull request's deployment and check run say so.
      await reporter.report(build, 'undeployed', undefined, 'undeployed', 'build');
      return outcome;
    },

    /** Deletes the build's Jobs of one kind (their pods go with them). */
    async killJobs(name: string, kind: JobKind): Promise<number> {
      const jobs = await kube.batch.listNamespacedJob({
        namespace,
        labelSelector: `${BUILD_LABEL}=${name},${JOB_KIND_LABEL}=${kind}`,
      });
      for (const job of jobs.items) await deleteJob(job.metadata?.name ?? '');
      return jobs.items.length;
    },

    /**
     * Deletes every object carrying the build label, then lets the Deployment go by removing the
     * finalizer; resolves once the Deployment is gone.
     */
    async deleteBuildObjects(name: string): Promise<void> {
      const selector = `${BUILD_LABEL}=${name}`;
      const kinds: [string, string][] = [
        ['networking.k8s.io/v1', 'Ingress'],
        ['v1', 'Service'],
        ['batch/v1', 'Job'],
        ['v1', 'ConfigMap'],
        ['v1', 'Secret'],
        ['v1', 'PersistentVolumeClaim'],
        ['apps/v1', 'Deployment'],
      ];
      for (const [apiVersion, kind] of kinds) {
        const list = await kube.objects.list(
          apiVersion,
          kind,
          namespace,
          undefined,
          undefined,
          undefined,
          undefined,
          selector,
        );
        for (const item of list.items) {
          await kube.objects
            .delete(
              { apiVersion, kind, metadata: { name: item.metadata?.name ?? '', namespace } },
              undefined,
              undefined,
              undefined,
              undefined,
              'Background',
            )
            .catch((error: unknown) => {
              if (!isKubeStatus(error, 404)) throw error;
            });
        }
      }
      // The finalizer is removed last: from here on nothing of the build holds a database.
      let deployment: V1Deployment;
      try {
        deployment = await kube.apps.readNamespacedDeployment({ name, namespace });
      } catch (error) {
        if (isKubeStatus(error, 404)) return;
        throw error;
      }
      const finalizers = (deployment.metadata?.finalizers ?? []).filter(
        (finalizer) => finalizer !== CLEANUP_FINALIZER,
      );
      await patchDeployment(name, {
        metadata: { finalizers, resourceVersion: deployment.metadata?.resourceVersion },
      });
      const ctx = Context.current();
      const path = `/apis/apps/v1/namespaces/${namespace}/deployments`;
      for (;;) {
        try {
          const current = await kube.apps.readNamespacedDeployment({ name, namespace });
          ctx.heartbeat();
          await waitForChange(
            kube,
            path,
            name,
            current.metadata?.resourceVersion,
            5000,
            ctx.cancellationSignal,
          );
        } catch (error) {
          if (isKubeStatus(error, 404)) return;
          throw error;
        }
      }
    },

    /**
     * Reports a commit status (context `runboat/build`) linking to the live build, its page, its
     * init log or its image build log, and with it the build's deployment status and check run
     * when those are on (docs/operations.md, "GitHub"); a no-op without a GitHub client.
     */
    async postCommitStatus(
      build: BuildRef,
      state: CommitStatusState,
      description: string,
      link: ReportLink,
    ): Promise<void> {
      await reporter.report(build, phaseOfStatus(state, description), state, description, link);
    },
  };
}

/** A pod of the build's app that is ready and not on its way out. */
function podReady(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** How an init Job ended, and whether the init activity gave its slot back itself. */
export interface InitOutcome extends JobOutcome {
  /**
   * True once Temporal has taken the init activity's release of the build's init slot; false
   * when it sent none or it failed; absent from the outcome of a worker from before it. Only
   * when true may the build's workflow leave its own release out.
   */
  slotReleased?: boolean;
}

/** What one transition writes onto the Deployment. */
export interface Mirror {
  status?: BuildStatus;
  initStatus?: InitStatus;
  /** '' clears it. */
  failureReason?: string;
  /** 'failed' once cleanup gave up; '' clears it. */
  cleanupStatus?: string;
  /** Builds with an image build: `building`, `built` or `failed`. */
  imageStatus?: 'building' | 'built' | 'failed';
}

/** The activities, for `proxyActivities<BuildActivities>()` in workflows. */
export type BuildActivities = ReturnType<typeof createActivities>;
