/**
 * `npm start`: runs the system locally. Provisions the tools on first use, starts a sandbox
 * (Temporal dev server + kwok Kubernetes cluster), a worker (both roles) and the API, configured
 * for it with `examples/repos.yaml` (or `RUNBOAT_REPOS_FILE`), and keeps them until Ctrl-C.
 * Development defaults: webhook secret `runboat-dev-secret`, public start/stop, admin token
 * `runboat-dev-admin-token` (each overridable by its environment variable).
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKubeClients, isKubeStatus } from '../lib/kube.js';
import { servePodLogs } from './kwok-logs.js';
import { untilInterrupted } from './run-command.js';
import { describeSandbox, startSandbox } from './sandbox.js';
import { writeFile } from 'node:fs/promises';
import { spawnApi, spawnWorker } from './worker-process.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

async function main(): Promise<void> {
  const sandbox = await startSandbox({ keep: process.env.RUNBOAT_SANDBOX_KEEP === '1' });
  try {
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
    };
    const workerLog = join(sandbox.runDir, 'worker.log');
    const apiLog = join(sandbox.runDir, 'api.log');
    const worker = await spawnWorker(env, workerLog);
    const api = await spawnApi({ RUNBOAT_API_PORT: '8000', ...env }, apiLog);
    // For `npm run webhook`: where to deliver, and with which secret.
    await writeFile(
      join(sandbox.runDir, 'system.json'),
      JSON.stringify({ apiUrl: api.url, webhookSecret: env.RUNBOAT_WEBHOOK_SECRET }),
    );
    console.log(`\nrunboat is up (sandbox ${sandbox.id}).\n\n${describeSandbox(sandbox)}`);
    console.log(`worker log        ${workerLog}\napi log           ${apiLog}`);
    console.log(`builds namespace  ${namespace}`);
    console.log(`pod log (fake)    ${podLog}\n`);
    console.log(`UI and API        ${api.url}  (API docs: ${api.url}/api/v1/openapi.json)`);
    console.log('send a webhook    npm run webhook -- push acme/shop feature/demo\n');
    console.log('Press Ctrl-C to stop; everything started here is stopped with it.');
    const signal = await untilInterrupted();
    console.log(`\n${signal}: stopping…`);
    await Promise.all([api.stop('SIGTERM'), worker.stop('SIGTERM')]);
  } finally {
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(`[start] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
