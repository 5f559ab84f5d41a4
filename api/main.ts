/**
 * The API process: the composition root of the REST API, the GitHub webhook and the web UI.
 * It reads builds from an informer cache and changes them only through Temporal.
 */
import { createServer } from 'node:http';
import { loadSettings, SettingsError } from '../lib/settings.js';
import { answerWhileStarting } from './starting.js';
import { trackShutdown } from './graceful-shutdown.js';

/**
 * The rest of the process, loaded once it listens: these modules (the Kubernetes and Temporal
 * clients above all) took most of a second of CPU to load, before the first answer.
 */
async function loadModules() {
  const [
    prom,
    githubModule,
    buildLogs,
    kubeModule,
    loggerModule,
    settingsModule,
    temporalModule,
    appModule,
    indexModule,
    commandsModule,
    queuedModule,
    timelineModule,
    uiModule,
    sessionModule,
    summaryModule,
    webhookModule,
    workerMetricsModule,
    workerStatusModule,
  ] = await Promise.all([
    import('prom-client'),
    import('../lib/github.js'),
    import('../lib/build-logs.js'),
    import('../lib/kube.js'),
    import('../lib/logger.js'),
    import('../lib/settings.js'),
    import('../lib/temporal.js'),
    import('./app.js'),
    import('./build-index.js'),
    import('./commands.js'),
    import('./queued-builds.js'),
    import('./timeline.js'),
    import('./ui.js'),
    import('./session.js'),
    import('./fleet-summary.js'),
    import('./webhook.js'),
    import('./worker-metrics.js'),
    import('./worker-status.js'),
  ]);
  return {
    ...prom,
    ...githubModule,
    ...buildLogs,
    ...kubeModule,
    ...loggerModule,
    ...settingsModule,
    ...temporalModule,
    ...appModule,
    ...indexModule,
    ...commandsModule,
    ...queuedModule,
    ...timelineModule,
    ...uiModule,
    ...sessionModule,
    ...summaryModule,
    ...webhookModule,
    ...workerMetricsModule,
    ...workerStatusModule,
  };
}

async function main(): Promise<void> {
  const settings = loadSettings();
  if (!settings.RUNBOAT_WEBHOOK_SECRET && !settings.RUNBOAT_WEBHOOK_INSECURE) {
    throw new SettingsError(
      'environment RUNBOAT_WEBHOOK_SECRET: required (or RUNBOAT_WEBHOOK_INSECURE=true in development)',
    );
  }
  // Listening first: until the application below is ready, health answers and the rest is a 503
  // (api/starting.ts), so that a restart is answered at once (docs/operations.md, "The API at
  // scale"); a port in use fails the start before anything else is done.
  const server = createServer(answerWhileStarting);
  const shutdown = trackShutdown(server);
  server.listen(settings.RUNBOAT_API_PORT, settings.RUNBOAT_API_HOST);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const {
    collectDefaultMetrics,
    Registry,
    createGitHubClientFromSettings,
    createBuildLogs,
    createKubeClients,
    createLogger,
    reposFileReader,
    connectClient,
    temporalConnectionOptions,
    createApp,
    BuildIndex,
    createBuildCommands,
    temporalQueuedBuilds,
    createTimelines,
    workflowLink,
    webUi,
    createSessions,
    SummaryFeed,
    githubWebhook,
    registerWorkerMetrics,
    createWorkerStatus,
  } = await loadModules();
  // Lines written in the background: a webhook delivery does not wait for stdout.
  const logger = createLogger(settings.RUNBOAT_LOG_LEVEL, 'runboat-api', { sync: false });
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
  // Temporal is connected to while the builds are listed: the list needs it only at its end.
  const connecting = connectClient(temporal);
  connecting.catch(() => undefined);
  const kube = createKubeClients({
    kubeconfig: settings.RUNBOAT_KUBECONFIG,
    context: settings.RUNBOAT_KUBE_CONTEXT,
  });
  const namespace = settings.RUNBOAT_BUILD_NAMESPACE;
  const queued = connecting.then((client) =>
    temporalQueuedBuilds({ client, buildsTaskQueue: temporal.buildsTaskQueue }),
  );
  const index = new BuildIndex(kube, namespace, settings.RUNBOAT_BUILD_DOMAIN, logger, {
    queued: {
      list: async () => (await queued).list(),
      find: async (name) => (await queued).find(name),
    },
  });
  // The first list of every build runs while the rest starts, and the API answers before it ends
  // (503 until then, api/app.ts).
  const indexStarted = index.start();
  indexStarted.catch(() => undefined);
  const client = await connecting;
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
    shown: (name) => index.get(name)?.status,
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
  server.off('request', answerWhileStarting);
  server.on('request', app.callback());
  shutdown.signal.addEventListener('abort', () => stopping.abort());
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
