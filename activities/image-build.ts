/**
 * The image build of a build (repo entries with `imageBuild`, docs/kubefiles.md "Image builds"):
 * a build Job of the `build` kubefiles mode builds the commit and pushes `<registry>/<name>:<sha>`
 * before the init. It runs on a task queue of its own, whose slots are the image build
 * concurrency. Built by `createImageBuildActivities(deps, jobs)`, joined in `activities/index.ts`.
 *
 * Builds of one image build it once. The ConfigMap `runboat-image-<hash of the ref>` of the
 * builds' namespace (labelled with no build, so that it outlives them) is both the lock and the
 * record: whoever creates it builds (`state: building`, its Job); the others wait for that Job,
 * reuse a `built` image, or take a `failed` one (or one whose Job is gone) over by an update
 * guarded by its resourceVersion.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/activity';
import { type V1ConfigMap, type V1Job } from '@kubernetes/client-node';
import {
  type BuildRef,
  type CommitInfo,
  type JobKind,
  type ResolvedBuild,
  type ResolvedImageBuild,
} from '../domain/build.js';
import { isKubeStatus } from '../lib/kube.js';
import type { ImageBuildConfig } from '../lib/settings.js';
import type { ActivityDeps } from './index.js';
import {
  finished,
  jobName,
  keepJobLog,
  storeJobLog,
  waitForChange,
  type JobOutcome,
} from './jobs.js';

/** Label on the image records, for `kubectl get configmap -l runboat/image-record`. */
export const IMAGE_RECORD_LABEL = 'runboat/image-record';

/** The state an image record holds. */
export type ImageRecordState = 'building' | 'built' | 'failed';

/** The name of the record of an image: `runboat-image-<16 hex digits of its ref's hash>`. */
export function imageRecordName(ref: string): string {
  return `runboat-image-${createHash('sha256').update(ref).digest('hex').slice(0, 16)}`;
}

/**
 * The image build of a commit: `<registry>/<name>:<sha>`, the name defaulting to the repo as
 * `owner-name`, lower-case.
 */
export function resolveImageBuild(
  commit: CommitInfo,
  options: ImageBuildConfig,
): ResolvedImageBuild {
  const name = options.name ?? commit.repo.toLowerCase().replace('/', '-');
  return {
    ref: `${options.registry}/${name}:${commit.gitCommit}`,
    registry: options.registry,
    name,
    dockerfile: options.dockerfile,
    context: options.context,
    pushSecret: options.pushSecret ?? null,
    builderImage: options.builderImage,
  };
}

/** How a build got its image. */
export interface ImageBuildOutcome {
  succeeded: boolean;
  /** Why it failed; null when it succeeded. */
  reason: string | null;
  /** The image, `<registry>/<name>:<sha>`. */
  ref: string;
  /** `built`: by a Job of this build; `waited`: for the Job of another build; `reused`: no Job. */
  how: 'built' | 'waited' | 'reused';
  /** The Job that built it (this build's or another's); null when reused. */
  jobName: string | null;
}

/** What the image build needs of the other activities (closures of `createActivities`). */
export interface BuildJobRunner {
  /** The one Job of a kind the kubefiles render for a build, named `name`. */
  renderJob(build: BuildRef, config: ResolvedBuild, kind: JobKind, name: string): Promise<V1Job>;
  /** Runs the Job to its end and keeps its log; cancelled, it deletes the Job. */
  runBuildJob(build: BuildRef, kind: JobKind, job: V1Job): Promise<JobOutcome>;
  /** Turns errors no retry can fix into typed non-retryable failures. */
  guard<T>(what: string, action: () => Promise<T>): Promise<T>;
}

/** What the image build activities need from the process that runs them. */
export type ImageBuildActivityDeps = Pick<ActivityDeps, 'kube' | 'namespace' | 'logger'>;

/** What a claim of the record found. */
type Claim =
  | { kind: 'owned' }
  | { kind: 'built'; job: string | null }
  | { kind: 'building'; job: string }
  /** Claimed a moment ago: its Job is not created yet. */
  | { kind: 'pending'; job: string };

/**
 * How long a record may say `building` for a Job that does not exist before it is taken over:
 * its owner creates the Job right after the record, and releases the record if it cannot.
 */
export const PENDING_GRACE_MS = 120_000;

/** Builds the image build activity. */
export function createImageBuildActivities(deps: ImageBuildActivityDeps, jobs: BuildJobRunner) {
  const { kube, namespace } = deps;
  const log = deps.logger.child({ component: 'image-build' });

  const recordOf = (ref: string, state: ImageRecordState, job: string, build: string) => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: imageRecordName(ref), namespace, labels: { [IMAGE_RECORD_LABEL]: 'true' } },
    data: { ref, state, job, build, updatedAt: new Date().toISOString() },
  });

  const readJob = async (name: string): Promise<V1Job | undefined> => {
    try {
      return await kube.batch.readNamespacedJobStatus({ name, namespace });
    } catch (error) {
      if (isKubeStatus(error, 404)) return undefined;
      throw error;
    }
  };

  /** Replaces the record if it has not changed since it was read; false when it had. */
  const replaceRecord = async (current: V1ConfigMap, body: V1ConfigMap): Promise<boolean> => {
    try {
      await kube.core.replaceNamespacedConfigMap({
        name: current.metadata?.name ?? '',
        namespace,
        body: {
          ...body,
          metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion },
        },
      });
      return true;
    } catch (error) {
      if (isKubeStatus(error, 409) || isKubeStatus(error, 404)) return false;
      throw error;
    }
  };

  /**
   * Makes this build's Job the one that builds the image, or says who does or did. A record
   * whose build failed, or whose Job is gone or failed, is taken over.
   */
  const claim = async (ref: string, job: string, build: string): Promise<Claim> => {
    const name = imageRecordName(ref);
    for (;;) {
      try {
        await kube.core.createNamespacedConfigMap({
          namespace,
          body: recordOf(ref, 'building', job, build),
        });
        return { kind: 'owned' };
      } catch (error) {
        if (!isKubeStatus(error, 409)) throw error;
      }
      let current: V1ConfigMap;
      try {
        current = await kube.core.readNamespacedConfigMap({ name, namespace });
      } catch (error) {
        if (isKubeStatus(error, 404)) continue; // deleted meanwhile: create it again
        throw error;
      }
      const data = current.data ?? {};
      const owner = data.job ?? '';
      // A retried attempt of this very build: its Job, if created, is adopted by runJob.
      if (owner === job) return { kind: 'owned' };
      if (data.state === 'built') return { kind: 'built', job: owner || null };
      if (data.state === 'building' && owner) {
        const running = await readJob(owner);
        const end = running ? finished(running) : undefined;
        if (running && !end) return { kind: 'building', job: owner };
        const claimedAt = Date.parse(data.updatedAt ?? '');
        if (!running && Date.now() - claimedAt < PENDING_GRACE_MS) {
          return { kind: 'pending', job: owner };
        }
        if (end?.succeeded) {
          // Its build ended well but nobody recorded it (its worker went away).
          await replaceRecord(current, recordOf(ref, 'built', owner, data.build ?? ''));
          return { kind: 'built', job: owner };
        }
      }
      // Failed, or its Job is gone: this build takes it over, unless another got there first.
      if (await replaceRecord(current, recordOf(ref, 'building', job, build))) {
        log.info(
          { build, image: ref, previous: owner, state: data.state },
          'image build taken over',
        );
        return { kind: 'owned' };
      }
    }
  };

  /** Records how this build's Job ended, if the record is still this Job's. */
  const recordEnd = async (ref: string, job: string, build: string, state: ImageRecordState) => {
    const name = imageRecordName(ref);
    for (let attempt = 0; attempt < 5; attempt++) {
      let current: V1ConfigMap;
      try {
        current = await kube.core.readNamespacedConfigMap({ name, namespace });
      } catch (error) {
        if (!isKubeStatus(error, 404)) throw error;
        // Deleted by an operator meanwhile: this build knows the outcome, record it again.
        await kube.core
          .createNamespacedConfigMap({ namespace, body: recordOf(ref, state, job, build) })
          .catch((failure: unknown) => {
            if (!isKubeStatus(failure, 409)) throw failure;
          });
        return;
      }
      if (current.data?.job !== job) return;
      if (await replaceRecord(current, recordOf(ref, state, job, build))) return;
    }
  };

  /** Keeps a log of this build's image when no Job of its own ran (`<build>-build-log`). */
  const keepNote = (build: string, job: string | null, text: string) =>
    storeJobLog(kube, namespace, build, 'build', {
      job: job ?? 'none',
      succeeded: true,
      reason: null,
      log: text,
    });

  /** Waits for another build's Job to end; undefined when it was deleted before. */
  const waitForJob = async (name: string): Promise<JobOutcome | undefined> => {
    const ctx = Context.current();
    const path = `/apis/batch/v1/namespaces/${namespace}/jobs`;
    for (;;) {
      if (ctx.cancellationSignal.aborted) await ctx.cancelled;
      const current = await readJob(name);
      if (!current) return undefined;
      const end = finished(current);
      if (end) return { jobName: name, ...end, adopted: false };
      ctx.heartbeat({ waitingFor: name });
      const rv = current.metadata?.resourceVersion;
      await waitForChange(kube, path, name, rv, 5000, ctx.cancellationSignal);
    }
  };

  return {
    /**
     * Gets the build's image built (image build task queue: one slot per build Job): builds it
     * with a Job of its own (`<build>-build-<generation>`), waits for the build of the same image
     * another build runs, or reuses one built before. Keeps the log in `<build>-build-log`
     * either way. The workflow mirrors the outcome.
     */
    async buildImage(
      build: BuildRef,
      config: ResolvedBuild,
      generation: number,
    ): Promise<ImageBuildOutcome> {
      const ctx = Context.current();
      // An early heartbeat, so that a cancellation reaches the activity before its Job exists.
      ctx.heartbeat();
      const image = config.imageBuild;
      if (!image) {
        throw ApplicationFailure.nonRetryable(`build ${build.name} has no image build`);
      }
      const { ref } = image;
      const job = jobName(build.name, 'build', generation);
      return jobs.guard('build image', async () => {
        for (;;) {
          if (ctx.cancellationSignal.aborted) await ctx.cancelled;
          const found = await claim(ref, job, build.name);
          if (found.kind === 'built') {
            log.info({ build: build.name, image: ref, job: found.job }, 'image reused');
            await keepNote(
              build.name,
              found.job,
              `image ${ref} was built before (by Job ${found.job ?? 'unknown'}): reused, not built again\n`,
            );
            return { succeeded: true, reason: null, ref, how: 'reused', jobName: found.job };
          }
          if (found.kind === 'pending') {
            // Its owner is about to create the Job: look again in a moment.
            ctx.heartbeat({ waitingFor: found.job });
            await new Promise((resolve) => setTimeout(resolve, 1000));
            continue;
          }
          if (found.kind === 'building') {
            log.info({ build: build.name, image: ref, job: found.job }, 'waiting for image build');
            const ended = await waitForJob(found.job);
            // Its Job went away (its build was reset or undeployed): claim the image again.
            if (!ended) continue;
            await keepJobLog(kube, namespace, build.name, 'build', ended);
            return { ...ended, ref, how: 'waited' };
          }
          let ended: JobOutcome;
          try {
            const rendered = await jobs.renderJob(build, config, 'build', job);
            if (ctx.cancellationSignal.aborted) await ctx.cancelled;
            ended = await jobs.runBuildJob(build, 'build', rendered);
          } catch (error) {
            // Cancelled (a reset, an undeploy) or unable to run its Job: this build lets the
            // image go, so that the next build of it takes it over at once. A retry of this
            // attempt claims it again.
            await recordEnd(ref, job, build.name, 'failed').catch((failure: unknown) =>
              log.warn(
                { build: build.name, image: ref, err: failure },
                'image record not released',
              ),
            );
            throw error;
          }
          await recordEnd(ref, job, build.name, ended.succeeded ? 'built' : 'failed');
          return {
            succeeded: ended.succeeded,
            reason: ended.reason,
            ref,
            how: 'built',
            jobName: ended.jobName,
          };
        }
      });
    },
  };
}
