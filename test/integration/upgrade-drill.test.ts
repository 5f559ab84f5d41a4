/**
 * The upgrade drill (docs/upgrades.md): builds in every state run under worker version A; version
 * B, whose workflow code changed behind a patch, is promoted and A is stopped; every build then
 * goes through its remaining transitions on B, and no history holds a failed workflow task.
 *
 * B's workers run from a scratch copy of the sources in which two activity calls of the build
 * workflow trade places behind `patched()`, as a real change would.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildStatus, CommitInfo } from '../../domain/build.js';
import {
  resetUpdate,
  startUpdate,
  stateQuery,
  stopUpdate,
  undeployUpdate,
} from '../../domain/messages.js';
import { OUTCOME_LABEL, RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { ensureBuild } from '../../lib/temporal.js';
import { createBuildEnv, type BuildEnv, type WorkerProcess } from './build-env.js';
import { eventually } from './helpers.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const suffix = randomBytes(3).toString('hex');
const deploymentName = `runboat-drill-${suffix}`;
const versionA = `a-${suffix}`;
const versionB = `b-${suffix}`;
const image = 'ghcr.io/acme/odoo:16.0';
const CLEANUP = { attempts: 2, retrySeconds: 1 };

const repos = [
  {
    repo: 'acme/slowinit',
    branch: '.*',
    builds: [{ image, templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '12s' } } }],
  },
  {
    repo: 'acme/slowclean',
    branch: '.*',
    builds: [{ image, templateVars: { cleanupPodAnnotations: { [RUN_FOR_ANNOTATION]: '12s' } } }],
  },
  {
    repo: 'acme/cleanfail',
    branch: '.*',
    builds: [{ image, templateVars: { cleanupPodLabels: { [OUTCOME_LABEL]: 'fail' } } }],
  },
  {
    repo: 'acme/broken',
    branch: '.*',
    builds: [{ image, templateVars: { initPodLabels: { [OUTCOME_LABEL]: 'fail' } } }],
  },
  { repo: 'acme/.*', branch: '.*', builds: [{ image }] },
];

let env: BuildEnv;
let workerA: WorkerProcess;
let workerB: WorkerProcess | undefined;
let scratch: string | undefined;

/**
 * A copy of the sources whose build workflow swaps its first two consecutive one-line activity
 * calls behind `patched('upgrade-drill')`: the old order for histories written without it.
 */
async function patchedSources(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'runboat-drill-'));
  for (const part of [
    'activities',
    'domain',
    'lib',
    'watcher',
    'worker',
    'workflows',
    'kubefiles',
  ]) {
    await cp(join(projectRoot, part), join(dir, part), { recursive: true });
  }
  for (const file of ['package.json', 'tsconfig.json']) {
    await cp(join(projectRoot, file), join(dir, file));
  }
  await symlink(join(projectRoot, 'node_modules'), join(dir, 'node_modules'));
  const file = join(dir, 'workflows', 'build-workflow.ts');
  const source = await readFile(file, 'utf8');
  const pair = /^( *)(await short\.\w+\(.*\);)\n *(await short\.\w+\(.*\);)$/m.exec(source);
  if (!pair) throw new Error('no two consecutive activity calls in workflows/build-workflow.ts');
  const [whole, indent, first, second] = pair as unknown as [string, string, string, string];
  const swapped = source.replace(
    whole,
    [
      `${indent}if (patched('upgrade-drill')) {`,
      `${indent}  ${second}`,
      `${indent}  ${first}`,
      `${indent}} else {`,
      `${indent}  ${first}`,
      `${indent}  ${second}`,
      `${indent}}`,
    ].join('\n'),
  );
  // The workflow may import `patched` already (for patches of its own).
  const patched = /^\s*patched,$/m.test(swapped)
    ? swapped
    : swapped.replace(
        "} from '@temporalio/workflow';",
        "  patched,\n} from '@temporalio/workflow';",
      );
  if (!patched.includes('patched,')) throw new Error('no import from @temporalio/workflow');
  await writeFile(file, patched);
  return dir;
}

/** Starts a worker from another source tree; resolves once it runs. */
async function startWorkerFrom(dir: string, extra: NodeJS.ProcessEnv): Promise<WorkerProcess> {
  const logFile = join(dir, 'worker.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(dir, 'worker', 'main.ts')], {
    cwd: dir,
    env: { ...env.workerEnv, ...extra },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<string>((done) =>
    child.on('exit', (code, signal) => done(signal ?? String(code))),
  );
  const worker: WorkerProcess = {
    child,
    logFile,
    stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  await eventually(
    async () => {
      if (child.exitCode !== null)
        throw new Error(`worker B exited: ${await readFile(logFile, 'utf8')}`);
      expect(await readFile(logFile, 'utf8')).toContain('worker running');
    },
    120_000,
    250,
  );
  return worker;
}

function versioned(buildId: string): NodeJS.ProcessEnv {
  return {
    RUNBOAT_WORKER_VERSIONING: 'true',
    RUNBOAT_DEPLOYMENT_NAME: deploymentName,
    RUNBOAT_BUILD_ID: buildId,
    RUNBOAT_MAX_INITIALIZING: '1',
    RUNBOAT_CLEANUP_ATTEMPTS: String(CLEANUP.attempts),
    RUNBOAT_CLEANUP_RETRY_SECONDS: String(CLEANUP.retrySeconds),
  };
}

async function promote(buildId: string): Promise<void> {
  await eventually(async () => {
    const answer = await env.client.workflowService.describeWorkerDeployment({
      namespace: env.temporal.namespace,
      deploymentName,
    });
    const ids = answer.workerDeploymentInfo?.versionSummaries?.map(
      (summary) => summary.deploymentVersion?.buildId,
    );
    expect(ids).toContain(buildId);
  }, 60_000);
  // Temporal refuses (FAILED_PRECONDITION) until the version polls every task queue of the
  // current one: both roles' workers must have polled.
  await eventually(
    () =>
      env.client.workflowService.setWorkerDeploymentCurrentVersion({
        namespace: env.temporal.namespace,
        deploymentName,
        buildId,
        identity: 'upgrade drill',
      }),
    60_000,
    500,
  );
}

beforeAll(async () => {
  env = await createBuildEnv({ repos });
  [scratch] = await Promise.all([
    patchedSources(),
    (async () => {
      workerA = await env.startWorker(versioned(versionA));
      await promote(versionA);
    })(),
  ]);
  // B polls from the start, and is given nothing until it is promoted.
  workerB = await startWorkerFrom(scratch, versioned(versionB));
}, 240_000);

afterAll(async () => {
  await workerB?.stop('SIGTERM');
  await env?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** The state the workflow reports, once it is `status`. */
function waitFor(handle: WorkflowHandle, status: BuildStatus, timeoutMs = 90_000) {
  return eventually(
    async () => {
      const state = await handle.query(stateQuery);
      expect(state.status).toBe(status);
      return state;
    },
    timeoutMs,
    250,
  );
}

interface DrillBuild {
  state: string;
  commit: CommitInfo;
  handle: WorkflowHandle;
}

describe('the upgrade drill', () => {
  it('takes builds in every state from version A to version B (patched) without a failed workflow task', async () => {
    const start = async (state: string, repo: string, branch: string): Promise<DrillBuild> => {
      const commit = env.commit(repo, branch);
      const handle = await ensureBuild(
        env.client,
        { ...env.temporal, cleanup: CLEANUP },
        { commit, trigger: { kind: 'api' } },
      );
      return { state, commit, handle: env.client.workflow.getHandle(handle.workflowId) };
    };

    // Under A: one build in each state.
    const stopped = await start('stopped', 'acme/shop', 'stopped');
    const started = await start('started', 'acme/shop', 'started');
    const failed = await start('failed', 'acme/broken', 'failed');
    const cleanupFailed = await start('cleanup-failed', 'acme/cleanfail', 'cleanup-failed');
    const undeploying = await start('undeploying', 'acme/slowclean', 'undeploying');
    for (const build of [stopped, started, cleanupFailed, undeploying]) {
      await waitFor(build.handle, 'stopped');
    }
    await waitFor(failed.handle, 'failed');
    // The failed build was reset once under A: B replays that reset the old way.
    await failed.handle.executeUpdate(resetUpdate);
    await eventually(async () => {
      const state = await failed.handle.query(stateQuery);
      expect(state).toMatchObject({ status: 'failed', initGeneration: 2 });
    });
    await started.handle.executeUpdate(startUpdate);
    await waitFor(started.handle, 'started');
    await cleanupFailed.handle.executeUpdate(undeployUpdate);
    await waitFor(cleanupFailed.handle, 'cleanup-failed');
    // One init slot: the first slow init holds it, the second build waits in the queue.
    const initializing = await start('initializing', 'acme/slowinit', 'initializing');
    await waitFor(initializing.handle, 'initializing');
    const queued = await start('queued', 'acme/slowinit', 'queued');
    await waitFor(queued.handle, 'todo');
    await undeploying.handle.executeUpdate(undeployUpdate);
    await waitFor(undeploying.handle, 'undeploying');
    const builds = [stopped, started, failed, cleanupFailed, initializing, queued, undeploying];
    const before = await Promise.all(
      builds.map(
        async (build) => `${build.state}: ${(await build.handle.query(stateQuery)).status}`,
      ),
    );
    console.log(`under version A: ${before.join(', ')}`);

    // B, running since the start with nothing to do, is promoted; A goes.
    await promote(versionB);
    const upgraded = Date.now();
    await workerA.stop('SIGTERM');

    // Every build goes on, on B.
    await undeploying.handle.result();
    await waitFor(queued.handle, 'stopped', 120_000);
    await waitFor(initializing.handle, 'stopped', 120_000);
    for (const build of [stopped, initializing, queued]) {
      await build.handle.executeUpdate(startUpdate);
      await waitFor(build.handle, 'started');
      await build.handle.executeUpdate(stopUpdate);
      await build.handle.executeUpdate(resetUpdate);
      await waitFor(build.handle, 'stopped', 60_000);
    }
    await started.handle.executeUpdate(stopUpdate);
    await waitFor(started.handle, 'stopped');
    await failed.handle.executeUpdate(resetUpdate);
    await eventually(async () => {
      const state = await failed.handle.query(stateQuery);
      expect(state).toMatchObject({ status: 'failed', initGeneration: 3 });
    });
    // The cleanup that kept failing is fixed in the repos file; the undeploy is asked again.
    await env.writeRepos(repos.filter((entry) => entry.repo !== 'acme/cleanfail'));
    for (const build of builds) {
      if (build !== undeploying) await build.handle.executeUpdate(undeployUpdate);
    }
    await Promise.all(builds.map((build) => build.handle.result()));
    console.log(
      `after the upgrade, every build went through its transitions in ${Date.now() - upgraded} ms`,
    );

    // On B, with the patch taken by the resets after the upgrade, and no workflow task failed.
    let patchedRuns = 0;
    for (const build of builds) {
      const info = (await build.handle.describe()).raw.workflowExecutionInfo;
      expect(info?.versioningInfo?.deploymentVersion?.buildId, build.state).toBe(versionB);
      const events = (await build.handle.fetchHistory()).events ?? [];
      const failedTasks = events.filter((event) => event.workflowTaskFailedEventAttributes);
      expect(failedTasks, `${build.state}: failed workflow tasks`).toEqual([]);
      const markers = events.filter(
        (event) => event.markerRecordedEventAttributes?.markerName === 'core_patch',
      );
      if (markers.length > 0) patchedRuns++;
    }
    console.log(
      `${builds.length} builds upgraded from ${versionA} to ${versionB}: 0 failed workflow tasks, ${patchedRuns} took the patch`,
    );
    expect(patchedRuns).toBeGreaterThan(0);
  }, 420_000);
});
