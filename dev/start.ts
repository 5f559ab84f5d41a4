/**
 * `npm start`: runs the system locally. Provisions the tools on first use, starts a sandbox
 * (Temporal dev server + kwok Kubernetes cluster), a worker (both roles) and the API, configured
 * for it with `examples/repos.yaml` (or `RUNBOAT_REPOS_FILE`), and keeps them until Ctrl-C or
 * SIGTERM, which stop everything it started. A worker or API that exits unasked is restarted
 * (dev/supervisor.ts); a start that fails part-way stops what it started and says why.
 * Development defaults: webhook secret `runboat-dev-secret`, public start/stop, admin token
 * `runboat-dev-admin-token` (each overridable by its environment variable).
 */
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKubeClients, isKubeStatus } from '../lib/kube.js';
import { servePodLogs } from './kwok-logs.js';
import { untilInterrupted } from './run-command.js';
import { describeSandbox, startSandbox, type Sandbox } from './sandbox.js';
import { supervise, type Supervised } from './supervisor.js';
import { spawnApi, spawnWorker, type WorkerProcess } from './worker-process.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const log = (line: string) => console.log(`[start] ${line}`);

/** A start that cannot go on, with what the user should do. */
class StartError extends Error {}

/** The first SIGINT or SIGTERM, once received. */
class Interrupted extends Error {}

function busyPort(host: string, port: number): StartError {
  return new StartError(
    `RUNBOAT_API_PORT=${port}: ${host}:${port} is already in use (another runboat, or another ` +
      'program): stop it, or set RUNBOAT_API_PORT to a free port',
  );
}

/** Fails with a message naming RUNBOAT_API_PORT when the API could not listen there. */
async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, host, () => server.close(() => resolvePort()));
  }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EADDRINUSE') throw busyPort(host, port);
    throw new StartError(`RUNBOAT_API_PORT=${port} on ${host}: ${error.message}`);
  });
}

async function run(): Promise<number> {
  let signal: string | undefined;
  const interrupted = untilInterrupted().then((received) => {
    signal = received;
    log(`${received}: stopping…`);
  });
  const stopIfInterrupted = () => {
    if (signal) throw new Interrupted(signal);
  };
  let gaveUp: ((reason: string) => void) | undefined;
  const givenUp = new Promise<string>((resolveGiveUp) => (gaveUp = resolveGiveUp));

  const apiHost = process.env.RUNBOAT_API_HOST ?? '127.0.0.1';
  const apiPort = Number(process.env.RUNBOAT_API_PORT ?? 8000);
  let sandbox: Sandbox | undefined;
  const children: Supervised<WorkerProcess>[] = [];
  let exitCode = 0;
  try {
    // Before anything starts: a busy port would otherwise show only after the sandbox is up.
    await checkPortFree(apiHost, apiPort);
    sandbox = await startSandbox({ keep: process.env.RUNBOAT_SANDBOX_KEEP === '1' });
    stopIfInterrupted();
    const namespace = process.env.RUNBOAT_BUILD_NAMESPACE ?? 'runboat-builds';
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    await kube.core.createNamespace({ body: { metadata: { name: namespace } } }).catch((error) => {
      if (!isKubeStatus(error, 409)) throw error;
    });
    // The fake pods run nothing: this file is the log of each of them (append to it to follow).
    const podLog = join(sandbox.runDir, 'pods.log');
    await servePodLogs(kube.config, {
      namespace,
      file: podLog,
      lines: [`(sandbox) every pod of ${namespace} shows ${podLog} as its log`],
    });
    const env: NodeJS.ProcessEnv = {
      RUNBOAT_REPOS_FILE: join(projectRoot, 'examples', 'repos.yaml'),
      RUNBOAT_EXAMPLE_PGPASSWORD: 'odoo',
      RUNBOAT_WEBHOOK_SECRET: 'runboat-dev-secret',
      RUNBOAT_ADMIN_TOKEN: 'runboat-dev-admin-token',
      RUNBOAT_PUBLIC_START_STOP: 'true',
      ...process.env,
      RUNBOAT_TEMPORAL_ADDRESS: sandbox.temporal.address,
      RUNBOAT_TEMPORAL_NAMESPACE: sandbox.temporal.namespace,
      RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
      RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
      RUNBOAT_BUILD_NAMESPACE: namespace,
      RUNBOAT_API_HOST: apiHost,
      RUNBOAT_API_PORT: String(apiPort),
    };
    const workerLog = join(sandbox.runDir, 'worker.log');
    const apiLog = join(sandbox.runDir, 'api.log');
    const common = { log, onGiveUp: (reason: string) => gaveUp?.(reason) };
    stopIfInterrupted();
    children.push(
      await supervise({ ...common, name: 'worker', start: () => spawnWorker(env, workerLog) }),
    );
    stopIfInterrupted();
    const api = await supervise({
      ...common,
      name: 'api',
      start: () => spawnApi(env, apiLog),
    }).catch((error: Error) => {
      if (error.message.includes('EADDRINUSE')) throw busyPort(apiHost, apiPort);
      throw error;
    });
    children.push(api);
    const apiUrl = api.current?.url ?? `http://${apiHost}:${apiPort}`;
    // For `npm run webhook`: where to deliver, and with which secret.
    await writeFile(
      join(sandbox.runDir, 'system.json'),
      JSON.stringify({ apiUrl, webhookSecret: env.RUNBOAT_WEBHOOK_SECRET }),
    );
    stopIfInterrupted();
    console.log(`\nrunboat is up (sandbox ${sandbox.id}).\n\n${describeSandbox(sandbox)}`);
    console.log(`worker log        ${workerLog}\napi log           ${apiLog}`);
    console.log(`builds namespace  ${namespace}`);
    console.log(`pod log (fake)    ${podLog}\n`);
    console.log(`UI and API        ${apiUrl}  (API docs: ${apiUrl}/api/v1/openapi.json)`);
    console.log('send a webhook    npm run webhook -- push acme/shop feature/demo\n');
    console.log(
      'A worker or API that crashes is restarted. Press Ctrl-C to stop; everything started ' +
        'here is stopped with it.',
    );
    const reason = await Promise.race([interrupted.then(() => undefined), givenUp]);
    if (reason !== undefined) {
      log(`stopping everything: ${reason}`);
      exitCode = 1;
    }
  } catch (error) {
    // Interrupted while starting: the children got the terminal's signal too, and may have
    // failed their start for it.
    if (!(error instanceof Interrupted) && !signal) {
      const message = error instanceof Error ? error.message : String(error);
      console.error(`[start] ${message}`);
      if (sandbox || children.length > 0) log('stopping what was started');
      exitCode = 1;
    }
  } finally {
    const results = await Promise.allSettled(children.map((child) => child.stop()));
    for (const result of results) {
      if (result.status === 'rejected') log(`stop failed: ${String(result.reason)}`);
    }
    await sandbox?.stop().catch((error: unknown) => {
      log(`sandbox stop failed: ${String(error)}`);
      exitCode = 1;
    });
  }
  log(exitCode === 0 ? 'everything stopped' : `everything stopped (exit ${exitCode})`);
  return exitCode;
}

run().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`[start] ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
