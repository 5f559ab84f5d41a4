/**
 * The API process: the composition root of the REST API, the GitHub webhook and the web UI.
 * It reads builds from an informer cache and changes them only through Temporal.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createGitHubClientFromSettings } from '../lib/github.js';
import { createBuildLogs } from '../lib/build-logs.js';
import { createKubeClients } from '../lib/kube.js';
import { createLogger } from '../lib/logger.js';
import { loadSettings, reposFileReader, SettingsError } from '../lib/settings.js';
import { connectClient, temporalConnectionOptions } from '../lib/temporal.js';
import { createApp } from './app.js';
import { BuildIndex } from './build-index.js';
import { createBuildCommands } from './commands.js';
import { trackShutdown } from './graceful-shutdown.js';
import { temporalQueuedBuilds } from './queued-builds.js';
import { createTimelines, workflowLink } from './timeline.js';
import { webUi } from './ui.js';
import { createSessions } from './session.js';
import { SummaryFeed } from './fleet-summary.js';
import { githubWebhook } from './webhook.js';
import { registerWorkerMetrics } from './worker-metrics.js';
import { createWorkerStatus } from './worker-status.js';

async function main(): Promise<void> {
  const settings = loadSettings();
  // Lines written in the background: a webhook delivery does not wait for stdout.
  const logger = createLogger(settings.RUNBOAT_LOG_LEVEL, 'runboat-api', { sync: false });
  if (!settings.RUNBOAT_WEBHOOK_SECRET && !settings.RUNBOAT_WEBHOOK_INSECURE) {
    throw new SettingsError(
      'environment RUNBOAT_WEBHOOK_SECRET: required (or RUNBOAT_WEBHOOK_INSECURE=true in development)',
    );
  }
  const temporal = {
    ...temporalConnectionOptions(settings),
    namespace: settings.RUNBOAT_TEMPORAL_NAMESPACE,
    buildsTaskQueue: settings.RUNBOAT_BUILDS_TASK_QUEUE,
    initTaskQueue: settings.RUNBOAT_INIT_TASK_QUEUE,
    imageBuildTaskQueue: settings.RUNBOAT_IMAGE_BUILD_TASK_QUEUE,
    cancelSuperseded: settings.RUNBOAT_CANCEL_SUPERSEDED,
    cleanup: {
      attempts: settings.RUNBOAT_CLEANUP_ATTEMPTS,
      retrySeconds: settings.RUNBOAT_CLEANUP_RETRY_SECONDS,
    },
  };
  const client = await connectClient(temporal);
  const kube = createKubeClients({
    kubeconfig: settings.RUNBOAT_KUBECONFIG,
    context: settings.RUNBOAT_KUBE_CONTEXT,
  });
  const namespace = settings.RUNBOAT_BUILD_NAMESPACE;
  const index = new BuildIndex(kube, namespace, settings.RUNBOAT_BUILD_DOMAIN, logger, {
    queued: temporalQueuedBuilds({ client, buildsTaskQueue: temporal.buildsTaskQueue }),
  });
  const workers = createWorkerStatus({
    client,
    namespace: temporal.namespace,
    queues: {
      builds: temporal.buildsTaskQueue,
      init: temporal.initTaskQueue,
      // Watched once a repo entry builds an image (at start): otherwise nobody need poll it.
      ...(settings.repos.some((entry) => entry.builds[0]?.imageBuild)
        ? { 'image-build': temporal.imageBuildTaskQueue }
        : {}),
    },
  });
  // The first list of every build runs while the rest starts, and the API answers before it ends
  // (503 until then, api/app.ts): a restart is answered within a second, whatever the farm size.
  const indexStarted = index.start();
  indexStarted.catch(() => undefined);
  const reposFile = settings.RUNBOAT_REPOS_FILE;
  const repos = reposFile
    ? reposFileReader(reposFile, settings.repos, (message) => logger.error(message))
    : () => settings.repos;
  const github = createGitHubClientFromSettings(settings, {
    apiUrlSet: process.env.RUNBOAT_GITHUB_API_URL !== undefined,
    logger,
  });
  const commands = createBuildCommands({
    client,
    temporal,
    repos,
    github,
    updateTimeoutMs: settings.RUNBOAT_UPDATE_TIMEOUT_SECONDS * 1000,
  });
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  registerWorkerMetrics(metrics, workers);
  const stopping = new AbortController();
  const admin = {
    user: settings.RUNBOAT_ADMIN_USER,
    password: settings.RUNBOAT_ADMIN_PASSWORD,
    token: settings.RUNBOAT_ADMIN_TOKEN,
  };
  const sessions = createSessions({
    secret: settings.RUNBOAT_SESSION_SECRET,
    ttlMs: settings.RUNBOAT_SESSION_HOURS * 3600_000,
    baseUrl: settings.RUNBOAT_BASE_URL,
  });
  // One fleet summary for the API and every page of the UI.
  const summary = new SummaryFeed(index, {
    maxStarted: settings.RUNBOAT_MAX_STARTED,
    maxDeployed: settings.RUNBOAT_MAX_DEPLOYED,
    maxInitializing: settings.RUNBOAT_MAX_INITIALIZING,
  });
  const app = createApp({
    summary,
    sessions,
    stopping: stopping.signal,
    index,
    commands,
    logs: createBuildLogs(kube, namespace, { metrics }),
    timelines: createTimelines({
      client,
      namespace: temporal.namespace,
      temporalUiUrl: settings.RUNBOAT_TEMPORAL_UI_URL,
    }),
    settings: {
      repos,
      maxStarted: settings.RUNBOAT_MAX_STARTED,
      maxDeployed: settings.RUNBOAT_MAX_DEPLOYED,
      maxInitializing: settings.RUNBOAT_MAX_INITIALIZING,
      admin,
      publicStartStop: settings.RUNBOAT_PUBLIC_START_STOP,
      events: {
        maxStreams: settings.RUNBOAT_EVENTS_MAX_STREAMS,
        maxStreamsPerClient: settings.RUNBOAT_EVENTS_MAX_STREAMS_PER_CLIENT,
        maxBufferBytes: settings.RUNBOAT_EVENTS_MAX_BUFFER_BYTES,
        stallMs: settings.RUNBOAT_EVENTS_STALL_SECONDS * 1000,
        heartbeatMs: settings.RUNBOAT_EVENTS_HEARTBEAT_SECONDS * 1000,
      },
    },
    workers,
    temporalReady: async () => {
      await client.workflowService.getSystemInfo({});
      return true;
    },
    logger,
    metrics,
    extra: [
      githubWebhook({
        secret: settings.RUNBOAT_WEBHOOK_SECRET,
        insecure: settings.RUNBOAT_WEBHOOK_INSECURE,
        commands,
        index,
        logger,
        maxConcurrent: settings.RUNBOAT_WEBHOOK_MAX_CONCURRENT,
        ...(github?.isApp ? { installationOf: (repo) => github.installationId(repo) } : {}),
      }),
      webUi({
        index,
        commands,
        workers,
        repos,
        workflowLink: (name) =>
          workflowLink(settings.RUNBOAT_TEMPORAL_UI_URL, temporal.namespace, name),
        summary,
        publicStartStop: settings.RUNBOAT_PUBLIC_START_STOP,
        ...(admin.token || admin.user ? { login: { sessions, admin } } : {}),
        logger,
      }),
    ],
  });
  const server = app.listen(settings.RUNBOAT_API_PORT, settings.RUNBOAT_API_HOST);
  const shutdown = trackShutdown(server);
  shutdown.signal.addEventListener('abort', () => stopping.abort());
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : settings.RUNBOAT_API_PORT;
  await indexStarted;
  logger.info({ url: `http://${settings.RUNBOAT_API_HOST}:${port}`, namespace }, 'api listening');

  // Graceful (docs/operations.md, "Shutdown"): stop accepting, answer what is in flight (webhook
  // deliveries above all) up to the grace, then stop the informer and Temporal's connection. A
  // repeated signal (Ctrl-C reaches `npm start` and its children alike) changes nothing.
  const graceMs = settings.RUNBOAT_SHUTDOWN_GRACE_SECONDS * 1000;
  let stopRequested = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopRequested) return;
    stopRequested = true;
    logger.info({ signal, graceSeconds: graceMs / 1000 }, 'api stopping');
    void shutdown
      .drain(graceMs)
      .then((report) => {
        if (report.forced > 0) logger.warn(report, 'api drained: requests cut at the deadline');
        else logger.info(report, 'api drained');
        return index.stop();
      })
      .then(() => client.connection.close())
      .then(
        () => {
          logger.info('api stopped');
          process.exit(0);
        },
        (error: unknown) => {
          logger.error({ err: error }, 'api stop failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  if (error instanceof SettingsError) {
    console.error(`runboat api: bad configuration: ${error.message}`);
    process.exit(2);
  }
  console.error(error);
  process.exit(1);
});
