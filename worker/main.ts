/**
 * The worker process: the composition root of the `builds` role (build workflows, their short
 * activities and the drift watcher), the `init` role (the long init activity, one Job per slot:
 * the init concurrency of the whole system is the sum of the init slots of all `init` workers)
 * and the `image-build` role (the image build activity, one build Job per slot, likewise).
 *
 * SIGTERM/SIGINT shut it down gracefully: polling stops, running activities get a grace period,
 * and an init Job left running is adopted by the retried activity on another worker.
 * Task queues and the init limit: docs/architecture.md; running it: docs/operations.md.
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  type LogLevel,
  type WorkerDeploymentOptions,
} from '@temporalio/worker';
import { collectDefaultMetrics, Registry } from 'prom-client';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { createActivities } from '../activities/index.js';
import {
  fleetLimitsSignal,
  fleetWorkflowId,
  initSlotRequestSignal,
  initSlotReleaseSignal,
  initSlotsLimitSignal,
  initSlotsWorkflowId,
  initStartedSignal,
  INVALID_TRANSITION,
  undeployUpdate,
} from '../domain/messages.js';
import { createBuildMetrics, registerBuildsGauge } from '../lib/build-metrics.js';
import { createGitHubClientFromSettings } from '../lib/github.js';
import { createKubeClients } from '../lib/kube.js';
import { createLogger } from '../lib/logger.js';
import { loadSettings, reposFileReader, SettingsError } from '../lib/settings.js';
import { connectClient, ensureBuild, temporalConnectionOptions } from '../lib/temporal.js';
import { workerVersion } from '../lib/worker-version.js';
import { startAdopter, type Adopter } from '../watcher/adopter.js';
import { startDeploymentWatcher, type DeploymentWatcher } from '../watcher/deployment-watcher.js';
import { freeLoopbackPort, startHealthServer, type HealthServer } from './health-server.js';
import { syncPollSchedules, syncRedeliverySchedule } from './poll-schedules.js';

/** How often a builds worker checks that the fleet and the init slots workflows run. */
const SINGLETONS_CHECK_MS = 5000;

const temporalLevels: Record<string, LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  fatal: 'ERROR',
};

/**
 * The workflow code: the bundle `npm run build` prebuilt next to `dist/` when there is one (no
 * webpack at start-up), else bundled now from the workflows beside this file (`.ts` under tsx).
 */
function workflowCode(): { workflowBundle: { codePath: string } } | { workflowsPath: string } {
  const prebuilt = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));
  if (existsSync(prebuilt)) return { workflowBundle: { codePath: prebuilt } };
  const extension = extname(fileURLToPath(import.meta.url));
  return {
    workflowsPath: fileURLToPath(new URL(`../workflows/index${extension}`, import.meta.url)),
  };
}

async function main(): Promise<void> {
  const settings = loadSettings();
  const logger = createLogger(settings.RUNBOAT_LOG_LEVEL, 'runboat-worker');
  const sdkLog = logger.child({ component: 'temporal-sdk' });
  // The SDK's Prometheus exporter listens on loopback only; /metrics of the health server passes
  // its metrics on (docs/operations.md, "Metrics and alerts").
  const sdkMetricsPort = await installRuntime(
    new DefaultLogger(temporalLevels[settings.RUNBOAT_LOG_LEVEL] ?? 'INFO', (entry) => {
      const level = entry.level === 'TRACE' ? 'trace' : (entry.level.toLowerCase() as 'info');
      sdkLog[level](entry.meta ?? {}, entry.message);
    }),
  );

  const roles = new Set(settings.RUNBOAT_WORKER_ROLES);
  const temporal = {
    ...temporalConnectionOptions(settings),
    namespace: settings.RUNBOAT_TEMPORAL_NAMESPACE,
  };
  const connection = await NativeConnection.connect(temporalConnectionOptions(settings));
  const client = await connectClient(temporal);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const workers: Worker[] = [];
  const temporalAnswers = async (): Promise<boolean> => {
    try {
      await connection.withDeadline(Date.now() + 3000, () =>
        connection.workflowService.getSystemInfo({}),
      );
      return true;
    } catch {
      return false;
    }
  };
  const health = await startMetricsServer({
    host: settings.RUNBOAT_WORKER_METRICS_HOST,
    port: settings.RUNBOAT_WORKER_METRICS_PORT,
    registry,
    sdkMetricsUrl: `http://127.0.0.1:${sdkMetricsPort}/metrics`,
    // Ready once every worker of its roles polls and Temporal answers.
    ready: async () => ({
      polling: workers.length === roles.size && workers.every((w) => w.getState() === 'RUNNING'),
      temporal: await temporalAnswers(),
    }),
    logger,
  });
  const kube = createKubeClients({
    kubeconfig: settings.RUNBOAT_KUBECONFIG,
    context: settings.RUNBOAT_KUBE_CONTEXT,
  });
  const reposFile = settings.RUNBOAT_REPOS_FILE;
  const buildTemporal = {
    ...temporal,
    buildsTaskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
    initTaskQueue: settings.RUNBOAT_INIT_TASK_QUEUE,
    imageBuildTaskQueue: settings.RUNBOAT_IMAGE_BUILD_TASK_QUEUE,
    cancelSuperseded: settings.RUNBOAT_CANCEL_SUPERSEDED,
    cleanup: {
      attempts: settings.RUNBOAT_CLEANUP_ATTEMPTS,
      retrySeconds: settings.RUNBOAT_CLEANUP_RETRY_SECONDS,
    },
  };
  const github = createGitHubClientFromSettings(settings, {
    apiUrlSet: process.env.RUNBOAT_GITHUB_API_URL !== undefined,
    logger,
  });
  const workflowRunning = async (workflowId: string): Promise<boolean> => {
    try {
      const { status } = await client.workflow.getHandle(workflowId).describe();
      return status.name === 'RUNNING';
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return false;
      throw error;
    }
  };
  // One init limit for every init worker: a slots workflow per init task queue (docs/architecture.md).
  const initSlots = {
    workflowId: initSlotsWorkflowId(settings.RUNBOAT_INIT_TASK_QUEUE),
    limit: settings.RUNBOAT_MAX_INITIALIZING,
  };
  // The fleet plans from the drift watcher's informer cache once it runs (it starts below).
  const cache: { watcher?: DeploymentWatcher | undefined } = {};
  const activitiesRepos = reposFile
    ? reposFileReader(reposFile, settings.repos, (message) => logger.error(message))
    : () => settings.repos;
  const activities = createActivities({
    kube,
    namespace: settings.RUNBOAT_BUILD_NAMESPACE,
    buildDomain: settings.RUNBOAT_BUILD_DOMAIN,
    baseUrl: settings.RUNBOAT_BASE_URL,
    // Read anew at each resolution so that a redeploy picks up an edited repos file.
    repos: activitiesRepos,
    reposDir: settings.reposDir,
    secrets: process.env,
    github,
    githubReports: {
      deployments: settings.RUNBOAT_GITHUB_DEPLOYMENTS,
      checkRuns: settings.RUNBOAT_GITHUB_CHECK_RUNS,
    },
    githubApiUrl: settings.RUNBOAT_GITHUB_API_URL,
    logger,
    metrics: createBuildMetrics(registry),
    workflowStartTime: async (workflowId) =>
      (await client.workflow.getHandle(workflowId).describe()).startTime,
    ensureBuild: async (commit) =>
      (await ensureBuild(client, buildTemporal, { commit, trigger: { kind: 'sticky' } }))
        .workflowId,
    startPolledBuild: async (commit) => {
      try {
        await ensureBuild(client, buildTemporal, {
          commit,
          trigger: { kind: 'poll' },
          notAgain: true,
        });
        return true;
      } catch (error) {
        // A build of this commit ran and ended: undeployed on purpose, never brought back.
        if (error instanceof WorkflowExecutionAlreadyStartedError) return false;
        throw error;
      }
    },
    undeployBuild: async (name) => {
      try {
        await client.workflow.getHandle(name).executeUpdate(undeployUpdate);
      } catch (error) {
        // Already undeploying, or gone: what the poll wanted anyway.
        if (error instanceof WorkflowNotFoundError) return;
        if (error instanceof WorkflowUpdateFailedError) {
          const cause = error.cause as { type?: string } | undefined;
          if (cause?.type === INVALID_TRANSITION) return;
        }
        throw error;
      }
    },
    notifyInitStarted: (workflowId) =>
      client.workflow.getHandle(workflowId).signal(initStartedSignal),
    releaseInitSlot: (build) =>
      client.workflow.getHandle(initSlots.workflowId).signal(initSlotReleaseSignal, build),
    deploymentCache: () => cache.watcher?.deployments(),
    requestInitSlot: async (build, ticket, force) => {
      await client.workflow.signalWithStart('initSlotsWorkflow', {
        workflowId: initSlots.workflowId,
        taskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
        args: [{ limit: initSlots.limit }],
        signal: initSlotRequestSignal,
        signalArgs: [{ build, ticket, force }],
      });
    },
    workflowRunning,
  });

  // Build and fleet workflows both auto-upgrade: a running build moves to the current version at
  // its next workflow task, made safe by patches and the replay test (docs/upgrades.md).
  const workerDeploymentOptions: WorkerDeploymentOptions | undefined =
    settings.RUNBOAT_WORKER_VERSIONING
      ? {
          useWorkerVersioning: true,
          version: workerVersion(settings),
          defaultVersioningBehavior: 'AUTO_UPGRADE',
        }
      : undefined;
  const common = {
    connection,
    ...(workerDeploymentOptions ? { workerDeploymentOptions } : {}),
    namespace: temporal.namespace,
    activities,
    shutdownGraceTime: '10 seconds',
    // A reset or undeploy cancels a running init through its heartbeat: a short throttle lets
    // the cancellation reach it within seconds (docs/failures.md).
    maxHeartbeatThrottleInterval: '2 seconds',
  };
  // The builds Deployments are listed (10,000 at a large farm: seconds) while the workers are
  // created and run; until the cache has synced, the activities list what they need themselves.
  const watcherStarting = roles.has('builds')
    ? startDeploymentWatcher({
        kube,
        namespace: settings.RUNBOAT_BUILD_NAMESPACE,
        client,
        logger,
      })
    : undefined;
  // Awaited below; a failure meanwhile is not left unhandled.
  watcherStarting?.catch(() => undefined);
  const code = workflowCode();
  if (roles.has('builds')) {
    workers.push(
      await Worker.create({
        ...common,
        taskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
        // Builds are idle for days: a bounded cache keeps the worker's memory flat with the
        // number of builds; an evicted build replays its short history at its next task.
        maxCachedWorkflows: settings.RUNBOAT_MAX_CACHED_WORKFLOWS,
        // New workflows' first tasks wait on the task queue itself: half the polls there, not
        // Temporal's default fifth, so that thousands of adopted builds are taken over quickly.
        maxConcurrentWorkflowTaskPolls: settings.RUNBOAT_WORKFLOW_TASK_POLLS,
        nonStickyToStickyPollRatio: 0.5,
        ...code,
      }),
    );
  }
  if (roles.has('init')) {
    workers.push(
      await Worker.create({
        ...common,
        taskQueue: settings.RUNBOAT_INIT_TASK_QUEUE,
        maxConcurrentActivityTaskExecutions: settings.RUNBOAT_MAX_INITIALIZING,
      }),
    );
  }
  if (roles.has('image-build')) {
    workers.push(
      await Worker.create({
        ...common,
        taskQueue: settings.RUNBOAT_IMAGE_BUILD_TASK_QUEUE,
        maxConcurrentActivityTaskExecutions: settings.RUNBOAT_MAX_IMAGE_BUILDS,
      }),
    );
  }
  // Runtime's shutdown signals (SIGINT, SIGTERM) make every worker drain and return, then the
  // process exits 0 (docs/operations.md, "Shutdown"); say when it begins.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => logger.info({ signal }, 'worker stopping'));
  }
  // Polling from now on: a build pushed while the worker starts is served while the rest of
  // the start goes on (docs/operations.md, "Worker start time").
  const running = Promise.all(workers.map((worker) => worker.run()));
  running.catch(() => undefined);
  let watcher: DeploymentWatcher | undefined;
  let adopter: Adopter | undefined;
  let singletonsCheck: NodeJS.Timeout | undefined;
  try {
    const synced = await watcherStarting;
    watcher = synced;
    cache.watcher = synced;
    if (synced) registerBuildsGauge(registry, () => synced.deployments());
    // The singletons of the builds queue: the global init limit and the fleet. A worker that starts
    // with other limits hands them over; one that finds them gone (Temporal lost its database, an
    // operator terminated them) starts them again at its next check.
    const limits = {
      maxStarted: settings.RUNBOAT_MAX_STARTED,
      maxDeployed: settings.RUNBOAT_MAX_DEPLOYED,
    };
    const fleetId = fleetWorkflowId(settings.RUNBOAT_BUILDS_TASK_QUEUE);
    /** Starts the singletons (`onlyIfGone`: those not running); true when one was gone. */
    const startSingletons = async (onlyIfGone: boolean): Promise<boolean> => {
      let gone = false;
      if (!onlyIfGone || !(await workflowRunning(initSlots.workflowId))) {
        await client.workflow.signalWithStart('initSlotsWorkflow', {
          workflowId: initSlots.workflowId,
          taskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
          args: [{ limit: initSlots.limit }],
          signal: initSlotsLimitSignal,
          signalArgs: [initSlots.limit],
        });
        if (onlyIfGone) logger.warn({ workflow: initSlots.workflowId }, 'started again');
        gone = onlyIfGone;
      }
      if (!onlyIfGone || !(await workflowRunning(fleetId))) {
        await client.workflow.signalWithStart('fleetWorkflow', {
          workflowId: fleetId,
          taskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
          args: [{ limits, stickySeconds: settings.RUNBOAT_STICKY_INTERVAL_SECONDS }],
          signal: fleetLimitsSignal,
          signalArgs: [limits],
        });
        if (onlyIfGone) logger.warn({ workflow: fleetId }, 'started again');
        gone ||= onlyIfGone;
      }
      return gone;
    };
    // Adoption is wired below, once the watcher runs; a singleton found gone asks for a round now.
    const adoption: { adopter?: Adopter | undefined } = {};
    if (roles.has('builds')) {
      await startSingletons(false);
      // Two describes every few seconds: a Temporal that lost its database is noticed within
      // seconds, the limits hold again, and the builds are adopted back at once, not an adoption
      // interval later (docs/runbook.md, "Temporal lost its database").
      singletonsCheck = setInterval(
        () => {
          startSingletons(true)
            .then((gone) => {
              if (gone) adoption.adopter?.runSoon();
            })
            .catch((error: unknown) =>
              logger.warn({ err: error }, 'fleet and init slots not checked'),
            );
        },
        Math.min(SINGLETONS_CHECK_MS, settings.RUNBOAT_ADOPT_INTERVAL_SECONDS * 1000),
      );
      singletonsCheck.unref();
      // Polling as the trigger, or slower as the reconciliation of missed deliveries (README).
      const polling = settings.RUNBOAT_GITHUB_POLL_SECONDS > 0;
      await syncPollSchedules({
        client,
        taskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
        repos: activitiesRepos(),
        intervalSeconds: !github
          ? 0
          : polling
            ? settings.RUNBOAT_GITHUB_POLL_SECONDS
            : settings.RUNBOAT_GITHUB_RECONCILE_SECONDS,
        pollNow: polling,
        logger,
      });
      // The App's failed webhook deliveries asked again (docs/operations.md, Redelivery).
      await syncRedeliverySchedule({
        client,
        taskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
        isApp: github?.isApp ?? false,
        intervalSeconds: settings.RUNBOAT_GITHUB_REDELIVER_SECONDS,
        logger,
      });
    }
    adopter = watcher
      ? startAdopter({
          watcher,
          kube,
          namespace: settings.RUNBOAT_BUILD_NAMESPACE,
          client,
          temporal: buildTemporal,
          logger,
          intervalMs: settings.RUNBOAT_ADOPT_INTERVAL_SECONDS * 1000,
          listEveryMs: settings.RUNBOAT_ADOPT_LIST_SECONDS * 1000,
        })
      : undefined;
    adoption.adopter = adopter;
  } catch (error) {
    // The start failed half-way: the workers polling already drain before the process ends.
    clearInterval(singletonsCheck);
    for (const worker of workers) {
      if (worker.getState() === 'RUNNING') worker.shutdown();
    }
    await running.catch(() => undefined);
    await adopter?.stop();
    await watcher?.stop();
    throw error;
  }
  logger.info(
    {
      roles: [...roles],
      initSlots: roles.has('init') ? settings.RUNBOAT_MAX_INITIALIZING : 0,
      imageBuildSlots: roles.has('image-build') ? settings.RUNBOAT_MAX_IMAGE_BUILDS : 0,
      temporal: temporal.address,
      metrics: `http://${settings.RUNBOAT_WORKER_METRICS_HOST}:${health.port}/metrics`,
      namespace: settings.RUNBOAT_BUILD_NAMESPACE,
      workflowBundle: 'workflowBundle' in code ? code.workflowBundle.codePath : 'bundled at start',
      version: workerDeploymentOptions
        ? `${workerDeploymentOptions.version.deploymentName}.${workerDeploymentOptions.version.buildId}`
        : 'unversioned',
    },
    'worker running',
  );
  try {
    await running;
  } finally {
    clearInterval(singletonsCheck);
    await adopter?.stop();
    await watcher?.stop();
    await client.connection.close();
    await connection.close();
    await health.close();
    logger.info('worker stopped');
  }
}

/**
 * Installs the Temporal runtime with its Prometheus exporter on a free loopback port; returns the
 * port. The port is free when chosen, yet another process may bind it before the exporter does:
 * then a fresh one is tried (the runtime is created, and the exporter bound, at `instance()`).
 */
async function installRuntime(logger: DefaultLogger): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    Runtime.install({
      telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${port}` } } },
      logger,
    });
    try {
      Runtime.instance();
      return port;
    } catch (error) {
      if (attempt >= 5 || !/in use/i.test((error as Error).message)) throw error;
    }
  }
}

/** The health server; a busy port is a bad configuration naming its variable. */
async function startMetricsServer(
  options: Parameters<typeof startHealthServer>[0],
): Promise<HealthServer> {
  try {
    return await startHealthServer(options);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new SettingsError(
        `environment RUNBOAT_WORKER_METRICS_PORT=${options.port} (host ${options.host}): ${(error as Error).message}`,
      );
    }
    throw error;
  }
}

main().catch((error: unknown) => {
  if (error instanceof SettingsError) {
    console.error(`runboat worker: bad configuration: ${error.message}`);
    process.exit(2);
  }
  console.error(error);
  process.exit(1);
});
