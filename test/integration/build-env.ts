/**
 * A build environment for integration tests: a namespace and task queues of its own in the run's
 * sandbox, a repos file, a fake GitHub, and real worker processes (`worker/main.ts`) started and
 * killed as an operator would.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Watch, type V1Deployment, type V1Job } from '@kubernetes/client-node';
import {
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import { expect, inject } from 'vitest';
import {
  deriveStatus,
  JOB_KIND_LABEL,
  type BuildStatus,
  type CommitInfo,
} from '../../domain/build.js';
import { createKubeClients, isKubeStatus, type KubeClients } from '../../lib/kube.js';
import { defaultKubefilesDir } from '../../lib/kubefiles.js';
import { connectClient, ensureBuild, type TemporalOptions } from '../../lib/temporal.js';
import type { SandboxInfo } from '../../dev/sandbox.js';
import { spawnWorker, type WorkerProcess } from '../../dev/worker-process.js';
import { OUTCOME_LABEL, RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { startUpdate, stateQuery, stopUpdate } from '../../domain/messages.js';
import { startFakeGitHub, type FakeGitHub } from './fake-github.js';
import { createTestNamespace, eventually } from './helpers.js';

export type { WorkerProcess } from '../../dev/worker-process.js';

/** Options of {@link createBuildEnv}. */
export interface BuildEnvOptions {
  /** Entries of the repos file (YAML-able objects). */
  repos: unknown[];
  /** A sandbox of the test's own (for drills that disturb it); default: the run's. */
  sandbox?: SandboxInfo;
}

/** Everything a build test needs. */
export interface BuildEnv {
  namespace: string;
  kube: KubeClients;
  client: Client;
  github: FakeGitHub;
  temporal: TemporalOptions;
  /** Environment of the worker processes. */
  workerEnv: NodeJS.ProcessEnv;
  /** Rewrites the repos file (the processes read it anew). */
  writeRepos(repos: unknown[]): Promise<void>;
  startWorker(env?: NodeJS.ProcessEnv): Promise<WorkerProcess>;
  /** A commit with a fresh random SHA. */
  commit(repo: string, targetBranch: string, pr?: number | null): CommitInfo;
  /** Starts (or finds) the build workflow of a commit. */
  build(commit: CommitInfo, maxHistoryEvents?: number): Promise<WorkflowHandle>;
  deployment(name: string): Promise<V1Deployment | undefined>;
  /**
   * Waits until the Deployment's derived status and status label are both `status` and the
   * build's workflow says so too (the activity that sees an init Job complete or a pod ready shows
   * `stopped` or `started` before its workflow knows: activities/mirror-ahead.ts).
   */
  waitForStatus(name: string, status: BuildStatus, timeoutMs?: number): Promise<V1Deployment>;
  /** Waits until the Deployment shows `status`, whatever its workflow says (or if none runs). */
  waitForShown(name: string, status: BuildStatus, timeoutMs?: number): Promise<V1Deployment>;
  close(): Promise<void>;
}

/** Creates the environment; call `close()` in afterAll. */
export async function createBuildEnv(options: BuildEnvOptions): Promise<BuildEnv> {
  const sandbox = options.sandbox ?? inject('sandbox');
  const kube = createKubeClients({
    kubeconfig: sandbox.kube.kubeconfig,
    context: sandbox.kube.context,
  });
  const namespace = await createTestNamespace(kube.core, 'builds');
  const suffix = randomBytes(3).toString('hex');
  const temporal: TemporalOptions = {
    address: sandbox.temporal.address,
    namespace: sandbox.temporal.namespace,
    buildsTaskQueue: `builds-${suffix}`,
    initTaskQueue: `init-${suffix}`,
    // Queues of its own: a worker of another test's environment must never take its work.
    imageBuildTaskQueue: `image-build-${suffix}`,
  };
  const dir = await mkdtemp(join(tmpdir(), 'runboat-test-'));
  const reposFile = join(dir, 'repos.yaml');
  // JSON is YAML: the repos file is written as JSON to keep the test free of formatting concerns.
  await writeFile(reposFile, JSON.stringify(options.repos, null, 2));
  const github = await startFakeGitHub();
  const client = await connectClient({
    address: sandbox.temporal.address,
    namespace: sandbox.temporal.namespace,
  });
  const workers: WorkerProcess[] = [];
  const workerEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    RUNBOAT_TEMPORAL_ADDRESS: temporal.address,
    RUNBOAT_TEMPORAL_NAMESPACE: temporal.namespace,
    RUNBOAT_BUILDS_TASK_QUEUE: temporal.buildsTaskQueue,
    RUNBOAT_INIT_TASK_QUEUE: temporal.initTaskQueue,
    RUNBOAT_IMAGE_BUILD_TASK_QUEUE: temporal.imageBuildTaskQueue,
    RUNBOAT_BUILD_NAMESPACE: namespace,
    RUNBOAT_BUILD_DOMAIN: 'runboat.test',
    RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
    RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
    RUNBOAT_REPOS_FILE: reposFile,
    RUNBOAT_GITHUB_API_URL: github.url,
    RUNBOAT_BASE_URL: 'http://runboat.test',
    RUNBOAT_LOG_LEVEL: 'info',
    TEST_DB_PASSWORD: 'not-a-real-secret',
  };

  const startWorker = async (env: NodeJS.ProcessEnv = {}): Promise<WorkerProcess> => {
    const worker = await spawnWorker(
      { ...workerEnv, ...env },
      join(dir, `worker-${workers.length}.log`),
    );
    workers.push(worker);
    return worker;
  };

  const waitForShown = (name: string, status: BuildStatus, timeoutMs = 60_000) =>
    eventually(
      async () => {
        const found = await deployment(name);
        if (!found) throw new Error(`deployment ${name} does not exist`);
        const derived = deriveStatus({
          deletionTimestamp: found.metadata?.deletionTimestamp,
          replicas: found.spec?.replicas ?? 0,
          readyReplicas: found.status?.readyReplicas ?? 0,
          annotations: found.metadata?.annotations ?? {},
          statusLabel: found.metadata?.labels?.['runboat/status'],
        });
        const label = found.metadata?.labels?.['runboat/status'];
        if (derived !== status || label !== status) {
          throw new Error(`${name}: status ${derived} (label ${label}), waiting for ${status}`);
        }
        return found;
      },
      timeoutMs,
      100,
    );

  const deployment = async (name: string) => {
    try {
      return await kube.apps.readNamespacedDeployment({ name, namespace });
    } catch (error) {
      if (isKubeStatus(error, 404)) return undefined;
      throw error;
    }
  };

  return {
    namespace,
    kube,
    client,
    github,
    temporal,
    workerEnv,
    writeRepos: (repos) => writeFile(reposFile, JSON.stringify(repos, null, 2)),
    startWorker,
    commit: (repo, targetBranch, pr = null) => ({
      repo,
      targetBranch,
      pr,
      gitCommit: randomBytes(20).toString('hex'),
    }),
    build: (commit, maxHistoryEvents) =>
      ensureBuild(client, temporal, {
        commit,
        trigger: { kind: 'api' },
        ...(maxHistoryEvents === undefined ? {} : { maxHistoryEvents }),
      }),
    deployment,
    waitForShown,
    waitForStatus: async (name, status, timeoutMs = 60_000) => {
      const began = Date.now();
      const shown = await waitForShown(name, status, timeoutMs);
      await eventually(
        async () => {
          const state = await client
            .withDeadline(Date.now() + 5_000, () =>
              client.workflow.getHandle(name).query(stateQuery),
            )
            .catch((error: unknown) => {
              // A Deployment with no workflow (not adopted yet, or never): nothing to agree.
              if (error instanceof WorkflowNotFoundError) return undefined;
              throw error;
            });
          if (state && state.status !== status) {
            throw new Error(`${name}: its workflow says ${state.status}, waiting for ${status}`);
          }
        },
        Math.max(1_000, timeoutMs - (Date.now() - began)),
        50,
      );
      return shown;
    },
    async close() {
      await Promise.all(workers.map((worker) => worker.stop('SIGTERM')));
      await github.close();
      await client.connection.close();
      await kube.core.deleteNamespace({ name: namespace }).catch(() => undefined);
    },
  };
}

/** Watches init Jobs and records the most that were unfinished at once. */
export async function observeInitJobs(env: Pick<BuildEnv, 'kube' | 'namespace'>) {
  const unfinished = new Set<string>();
  const created = new Map<string, number>();
  let peak = 0;
  const done = (job: V1Job) =>
    (job.status?.conditions ?? []).some(
      (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
    );
  const controller = await new Watch(env.kube.config).watch(
    `/apis/batch/v1/namespaces/${env.namespace}/jobs`,
    { labelSelector: `${JOB_KIND_LABEL}=initialize` },
    (phase, job: V1Job) => {
      const name = job.metadata?.name ?? '';
      if (phase === 'ADDED') created.set(name, (created.get(name) ?? 0) + 1);
      if (phase === 'DELETED' || done(job)) unfinished.delete(name);
      else unfinished.add(name);
      peak = Math.max(peak, unfinished.size);
    },
    () => undefined,
  );
  return {
    get peak() {
      return peak;
    },
    created,
    stop: () => controller.abort(),
  };
}

/** Repos file entries the tests share. */
export const testRepos = {
  /** Builds of `acme/broken` fail their init (the sandbox fails pods so labelled). */
  failing: {
    repo: 'acme/broken',
    branch: '.*',
    builds: [
      {
        image: 'ghcr.io/acme/odoo:16.0',
        templateVars: { initPodLabels: { [OUTCOME_LABEL]: 'fail' } },
      },
    ],
  },
  /** Every other `acme/*` repo and branch. */
  acme: { repo: 'acme/.*', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
} as const;

/** `acme/slow`, whose init pods run `runFor` (kwok): its builds stay initializing meanwhile. */
export function slowInitRepo(runFor: string) {
  return {
    repo: 'acme/slow',
    branch: '.*',
    builds: [
      {
        image: 'ghcr.io/acme/odoo:16.0',
        templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: runFor } },
      },
    ],
  };
}

/**
 * Starts and stops a stopped build until its workflow continues as new (a history past the cap
 * it was started with, see {@link BuildEnv.build}); how many cycles that takes depends on the
 * events a cycle writes. Returns the description of the new run.
 */
export async function cycleUntilContinuedAsNew(
  env: Pick<BuildEnv, 'waitForStatus'>,
  handle: WorkflowHandle,
  name: string,
): Promise<WorkflowExecutionDescription> {
  const firstRun = (await handle.describe()).runId;
  for (let cycle = 0; cycle < 15; cycle++) {
    await handle.executeUpdate(startUpdate);
    await env.waitForStatus(name, 'started');
    await handle.executeUpdate(stopUpdate);
    await env.waitForStatus(name, 'stopped');
    if ((await handle.describe()).runId !== firstRun) break;
  }
  return eventually(async () => {
    const description = await handle.describe();
    expect(description.runId).not.toBe(firstRun);
    return description;
  });
}

/** Names of the activities a workflow scheduled, in order, from its history. */
export async function scheduledActivities(
  handle: WorkflowHandle,
): Promise<(string | null | undefined)[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? []).map(
    (event) => event.activityTaskScheduledEventAttributes?.activityType?.name,
  );
}

/** The summaries of the local activities a workflow's run recorded, in order. */
export async function localActivitySummaries(handle: WorkflowHandle): Promise<string[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? [])
    .filter((event) => event.markerRecordedEventAttributes)
    .map((event) => {
      const data = event.userMetadata?.summary?.data;
      return data ? (JSON.parse(Buffer.from(data).toString('utf8')) as string) : '';
    });
}

/** The default kubefiles plus a `start` hook that leaves a ConfigMap behind. */
export async function kubefilesWithStartHook(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'runboat-kubefiles-'));
  await cp(defaultKubefilesDir, dir, { recursive: true });
  await writeFile(
    join(dir, 'start.yaml.njk'),
    [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata:',
      "  name: {{ (buildName ~ '-hook') | yaml }}",
      '  labels:',
      '    runboat/build: {{ buildName | yaml }}',
      'data:',
      '  branch: {{ commit.targetBranch | yaml }}',
      '',
    ].join('\n'),
  );
  return dir;
}
