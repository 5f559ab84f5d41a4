/**
 * `npm start`: runs the system locally. Provisions the tools on first use, starts a sandbox
 * (Temporal dev server + kwok Kubernetes cluster) and a worker (both roles) configured for it with
 * `examples/repos.yaml` (or `RUNBOAT_REPOS_FILE`), and keeps them until Ctrl-C.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKubeClients, isKubeStatus } from '../lib/kube.js';
import { untilInterrupted } from './run-command.js';
import { describeSandbox, startSandbox } from './sandbox.js';
import { spawnWorker } from './worker-process.js';

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
    const workerLog = join(sandbox.runDir, 'worker.log');
    const worker = await spawnWorker(
      {
        RUNBOAT_REPOS_FILE: join(projectRoot, 'examples', 'repos.yaml'),
        RUNBOAT_EXAMPLE_PGPASSWORD: 'odoo',
        ...process.env,
        RUNBOAT_TEMPORAL_ADDRESS: sandbox.temporal.address,
        RUNBOAT_TEMPORAL_NAMESPACE: sandbox.temporal.namespace,
        RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
        RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
        RUNBOAT_BUILD_NAMESPACE: namespace,
      },
      workerLog,
    );
    console.log(`\nrunboat is up (sandbox ${sandbox.id}).\n\n${describeSandbox(sandbox)}`);
    console.log(`worker log        ${workerLog}\nbuilds namespace  ${namespace}\n`);
    console.log('Press Ctrl-C to stop; everything started here is stopped with it.');
    const signal = await untilInterrupted();
    console.log(`\n${signal}: stopping…`);
    await worker.stop('SIGTERM');
  } finally {
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(`[start] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
