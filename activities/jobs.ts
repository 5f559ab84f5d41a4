/**
 * Running a build's Job to its end: create it idempotently (a retry adopts the Job created
 * before), wait for it with heartbeats, and keep the tail of its pod's log in a ConfigMap of the
 * build, whatever the ending.
 */
import { PatchStrategy, Watch, type KubernetesObject, type V1Job } from '@kubernetes/client-node';
import { BUILD_LABEL, JOB_KIND_LABEL, type JobKind } from '../domain/build.js';
import { describeKubeError, FIELD_MANAGER, isKubeStatus, type KubeClients } from '../lib/kube.js';

/** How a Job ended. */
export interface JobOutcome {
  jobName: string;
  succeeded: boolean;
  /** Why it failed (`DeadlineExceeded: …`, `BackoffLimitExceeded: …`, `Job deleted`). */
  reason: string | null;
  /** Whether this attempt found the Job already created by an earlier attempt. */
  adopted: boolean;
}

/** Lines of the pod log kept after a Job ends. */
export const LOG_TAIL_LINES = 500;

/** The short name of a Job kind in the names of its Jobs and log ConfigMaps. */
const shortKind: Record<JobKind, string> = {
  initialize: 'init',
  cleanup: 'cleanup',
  build: 'build',
};

/** The name of the ConfigMap that keeps the log of a build's Job kind. */
export function logConfigMapName(build: string, kind: JobKind): string {
  return `${build}-${shortKind[kind]}-log`;
}

/** The name of a build's Job of one kind and generation. */
export function jobName(build: string, kind: JobKind, generation: number): string {
  return `${build}-${shortKind[kind]}-${generation}`;
}

/** How the Job ended, from its conditions; undefined while it runs. */
export function finished(job: V1Job): { succeeded: boolean; reason: string | null } | undefined {
  for (const condition of job.status?.conditions ?? []) {
    if (condition.status !== 'True') continue;
    if (condition.type === 'Complete') return { succeeded: true, reason: null };
    if (condition.type === 'Failed') {
      const detail = [condition.reason, condition.message].filter(Boolean).join(': ');
      return { succeeded: false, reason: detail || 'Job failed' };
    }
  }
  return undefined;
}

/**
 * Resolves when the named object changes (or after `maxMs`), using a watch from the given
 * resource version, so that an ending is seen at once without polling the API server. Resolves
 * with the changed object when the watch delivered one.
 */
export async function waitForChange<T = unknown>(
  kube: KubeClients,
  path: string,
  name: string,
  resourceVersion: string | undefined,
  maxMs: number,
  signal: AbortSignal,
): Promise<T | undefined> {
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => controller?.abort();
  try {
    return await new Promise<T | undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), maxMs);
      signal.addEventListener('abort', () => resolve(undefined), { once: true });
      new Watch(kube.config)
        .watch(
          path,
          {
            fieldSelector: `metadata.name=${name}`,
            resourceVersion,
            allowWatchBookmarks: false,
            timeoutSeconds: Math.ceil(maxMs / 1000),
          },
          (phase, object: T) => {
            if (phase === 'MODIFIED' || phase === 'ADDED') resolve(object);
            if (phase === 'DELETED') resolve(undefined);
          },
          () => resolve(undefined),
        )
        .then((c) => {
          controller = c;
          signal.addEventListener('abort', onAbort, { once: true });
        })
        .catch(() => resolve(undefined));
    });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    controller?.abort();
  }
}

/**
 * Resolves true as soon as a watch of the objects matching `labelSelector`, from the given
 * resource version, delivers one that `matches`; false after `maxMs`, on abort or when the
 * watch ends.
 */
export async function waitForMatch<T>(
  kube: KubeClients,
  path: string,
  labelSelector: string,
  resourceVersion: string | undefined,
  matches: (object: T) => boolean,
  maxMs: number,
  signal: AbortSignal,
): Promise<boolean> {
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => controller?.abort();
  try {
    return await new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), maxMs);
      signal.addEventListener('abort', () => resolve(false), { once: true });
      new Watch(kube.config)
        .watch(
          path,
          {
            labelSelector,
            resourceVersion,
            allowWatchBookmarks: false,
            timeoutSeconds: Math.ceil(maxMs / 1000),
          },
          (phase, object: T) => {
            if ((phase === 'MODIFIED' || phase === 'ADDED') && matches(object)) resolve(true);
          },
          () => resolve(false),
        )
        .then((c) => {
          controller = c;
          signal.addEventListener('abort', onAbort, { once: true });
        })
        .catch(() => resolve(false));
    });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    controller?.abort();
  }
}

/** Options of {@link runJob}. */
export interface RunJobOptions {
  kube: KubeClients;
  namespace: string;
  build: string;
  kind: JobKind;
  /** The rendered Job. */
  job: V1Job;
  /** Called at least every few seconds while waiting (activity heartbeat). */
  heartbeat: (details: unknown) => void;
  signal: AbortSignal;
}

/** Creates the Job, or adopts the one an earlier attempt created, and waits for its end. */
export async function runJob(options: RunJobOptions): Promise<JobOutcome> {
  const { kube, namespace, build, kind, job, signal } = options;
  const name = job.metadata?.name ?? '';
  let adopted = false;
  try {
    await kube.batch.createNamespacedJob({ namespace, body: job, dryRun: 'All' });
    await kube.batch.createNamespacedJob({ namespace, body: job });
  } catch (error) {
    if (!isKubeStatus(error, 409)) throw error;
    const existing = await kube.batch.readNamespacedJob({ name, namespace });
    const labels = existing.metadata?.labels ?? {};
    if (labels[BUILD_LABEL] !== build || labels[JOB_KIND_LABEL] !== kind) {
      throw new Error(`Job ${name} exists but does not belong to build ${build} (${kind})`, {
        cause: error,
      });
    }
    adopted = true;
  }
  const path = `/apis/batch/v1/namespaces/${namespace}/jobs`;
  for (;;) {
    if (signal.aborted) throw signal.reason ?? new Error('cancelled');
    let current: V1Job;
    try {
      current = await kube.batch.readNamespacedJobStatus({ name, namespace });
    } catch (error) {
      if (isKubeStatus(error, 404)) {
        return { jobName: name, succeeded: false, reason: 'Job deleted before it ended', adopted };
      }
      throw error;
    }
    // Each change the watch delivers is looked at directly; a fresh read only after a quiet spell.
    for (let seen: V1Job | undefined = current; seen;) {
      const end = finished(seen);
      if (end) return { jobName: name, ...end, adopted };
      options.heartbeat({ job: name });
      seen = await waitForChange<V1Job>(
        kube,
        path,
        name,
        seen.metadata?.resourceVersion,
        5000,
        signal,
      );
    }
  }
}

/** The tail of the log of the Job's newest pod, or a line saying why there is none. */
async function podLogTail(kube: KubeClients, namespace: string, job: string): Promise<string> {
  try {
    const pods = await kube.core.listNamespacedPod({
      namespace,
      labelSelector: `job-name=${job}`,
    });
    const newest = pods.items
      .slice()
      .sort((a, b) =>
        String(a.metadata?.creationTimestamp ?? '').localeCompare(
          String(b.metadata?.creationTimestamp ?? ''),
        ),
      )
      .pop();
    if (!newest?.metadata?.name) return '(no pod was created for this Job)';
    const log = await kube.core.readNamespacedPodLog({
      name: newest.metadata.name,
      namespace,
      tailLines: LOG_TAIL_LINES,
      limitBytes: 256 * 1024,
    });
    return log || '(the pod wrote no log)';
  } catch (error) {
    return `(log unavailable: ${describeKubeError(error)})`;
  }
}

/** Prefix of the line with which the scripts of the default kubefiles say why they failed. */
export const SCRIPT_ERROR_PREFIX = 'runboat: error: ';

/**
 * The last line of a log with which a script said why it failed (kubefiles/README.md), without
 * the prefix; null when there is none.
 */
export function scriptError(log: string): string | null {
  const lines = log.split('\n').filter((line) => line.startsWith(SCRIPT_ERROR_PREFIX));
  const last = lines.at(-1);
  return last === undefined ? null : last.slice(SCRIPT_ERROR_PREFIX.length).trim() || null;
}

/** What a build's log ConfigMap of one Job kind holds. */
export interface KeptLog {
  /** The Job's name, or `none` when no Job of the build's own ran. */
  job: string;
  succeeded: boolean;
  reason: string | null;
  log: string;
}

/** Writes the build's log ConfigMap of one Job kind (`<build>-init-log` and kin). */
export async function storeJobLog(
  kube: KubeClients,
  namespace: string,
  build: string,
  kind: JobKind,
  kept: KeptLog,
): Promise<void> {
  const configMap: KubernetesObject & { data: Record<string, string> } = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: logConfigMapName(build, kind),
      namespace,
      labels: { [BUILD_LABEL]: build, [JOB_KIND_LABEL]: kind },
    },
    data: {
      job: kept.job,
      outcome: kept.succeeded ? 'succeeded' : 'failed',
      reason: kept.reason ?? '',
      finishedAt: new Date().toISOString(),
      log: kept.log,
    },
  };
  // Generated here, not from kubefiles: no dry run needed before applying it.
  await kube.objects.patch(
    configMap,
    undefined,
    undefined,
    FIELD_MANAGER,
    true,
    PatchStrategy.ServerSideApply,
  );
}

/** Keeps the tail of the Job's log and its outcome in the build's log ConfigMap; returns the log. */
export async function keepJobLog(
  kube: KubeClients,
  namespace: string,
  build: string,
  kind: JobKind,
  outcome: JobOutcome,
): Promise<string> {
  const log = await podLogTail(kube, namespace, outcome.jobName);
  await storeJobLog(kube, namespace, build, kind, {
    job: outcome.jobName,
    succeeded: outcome.succeeded,
    reason: outcome.reason,
    log,
  });
  return log;
}
