/**
 * Benchmark of adoption on the real sandbox: N build Deployments (default 500, written as the
 * Python runboat writes them) are adopted by a worker; then the Temporal server is restarted with
 * its database deleted, and the time until every build's workflow ran its first task again is
 * measured (by visibility, polled every second). Then the floor: as many empty workflows started and run
 * to their first task the same way (bench/floor.ts). Writes bench/reports/adoption.{json,md}.
 *
 *   npx tsx bench/adoption.ts [--builds 500] [--worker-env KEY=VALUE] [--node-arg --prof]
 *     [--release DIR]
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { restartTemporal, startSandbox } from '../dev/sandbox.js';
import { spawnWorker } from '../dev/worker-process.js';
import { createKubeClients } from '../lib/kube.js';
import { connectClient } from '../lib/temporal.js';
import { legacyDeployment } from './bench-kit.js';
import { measureAdoptionFloor } from './floor.js';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: '500' },
    /** `KEY=VALUE` added to the worker's environment (repeatable), e.g. a setting to compare. */
    'worker-env': { type: 'string', multiple: true, default: [] },
    /** An option for the worker's node (repeatable), e.g. `--prof` to see where its CPU goes. */
    'node-arg': { type: 'string', multiple: true, default: [] },
    /** A directory holding another release's `dist/`, whose worker adopts instead (a before). */
    release: { type: 'string' },
  },
});
const count = Number(args.builds);
const workerEnv = Object.fromEntries(
  (args['worker-env'] ?? []).map((pair) => [
    pair.slice(0, pair.indexOf('=')),
    pair.slice(pair.indexOf('=') + 1),
  ]),
);

async function main(): Promise<void> {
  // Databases in memory, as bench/scale.ts does: on this machine's disk, fsyncs dominate.
  const sandbox = await startSandbox({
    log: (line) => console.log(`[sandbox] ${line}`),
    root: process.env.RUNBOAT_SANDBOX_DIR ?? join('/dev/shm', 'runboat-bench-sandboxes'),
  });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-'));
  let stopWorker: (() => Promise<string>) | undefined;
  try {
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    const namespace = 'bench-adoption';
    await kube.core.createNamespace({ body: { metadata: { name: namespace } } });
    console.log(`[bench] writing ${count} build Deployments`);
    const names = Array.from({ length: count }, () => `b${randomBytes(16).toString('hex')}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < names.length) {
          const name = names[next++] as string;
          await kube.apps.createNamespacedDeployment({
            namespace,
            body: legacyDeployment({
              name,
              repo: 'acme/legacy',
              targetBranch: `branch-${next % 40}`,
              gitCommit: randomBytes(20).toString('hex'),
              container: { name: 'odoo', image: 'odoo:15.0' },
            }),
          });
        }
      }),
    );
    const reposFile = join(work, 'repos.yaml');
    await writeFile(
      reposFile,
      JSON.stringify([{ repo: '.*', branch: '.*', builds: [{ image: 'x:1' }] }]),
    );
    const temporal = {
      address: sandbox.temporal.address,
      namespace: sandbox.temporal.namespace,
      buildsTaskQueue: 'bench-builds',
      initTaskQueue: 'bench-init',
    };
    const worker = await spawnWorker(
      {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        RUNBOAT_TEMPORAL_ADDRESS: temporal.address,
        RUNBOAT_BUILDS_TASK_QUEUE: temporal.buildsTaskQueue,
        RUNBOAT_INIT_TASK_QUEUE: temporal.initTaskQueue,
        RUNBOAT_BUILD_NAMESPACE: namespace,
        RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
        RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
        RUNBOAT_REPOS_FILE: reposFile,
        RUNBOAT_ADOPT_INTERVAL_SECONDS: '1',
        RUNBOAT_MAX_DEPLOYED: String(count * 2),
        RUNBOAT_LOG_LEVEL: 'info',
        ...workerEnv,
      },
      join(work, 'worker.log'),
      300_000,
      // The release, as in production (`npm run build` first).
      {
        from: 'dist',
        nodeArgs: args['node-arg'] ?? [],
        ...(args.release ? { releaseDir: args.release } : {}),
      },
    );
    stopWorker = () => worker.stop();
    let client = await connectClient(temporal);
    // Taken over: the workflow ran its first task, which sets its search attributes.
    const takenOver = async () =>
      (
        await client.workflowService.countWorkflowExecutions({
          namespace: temporal.namespace,
          query: `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running' AND RunboatStatus IS NOT NULL`,
        })
      ).count?.toNumber() ?? 0;
    const waitForAll = async () => {
      const started = performance.now();
      let lastLine = started;
      for (;;) {
        const n = await takenOver().catch(() => 0);
        if (n >= count) return (performance.now() - started) / 1000;
        if (performance.now() - lastLine > 5000) {
          lastLine = performance.now();
          const s = (lastLine - started) / 1000;
          console.log(
            `[bench] ${s.toFixed(0)} s: ${n}/${count} taken over (${(n / s).toFixed(1)}/s)`,
          );
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    const firstAdoption = await waitForAll();
    console.log(`[bench] first adoption of ${count} builds: ${firstAdoption.toFixed(1)} s`);

    const wipedAt = performance.now();
    await restartTemporal(sandbox, { wipe: true });
    await client.connection.close();
    client = await connectClient(temporal);
    await waitForAll();
    const afterWipe = (performance.now() - wipedAt) / 1000;
    // The floor, with the builds worker stopped: the same starts and first tasks, empty.
    await stopWorker();
    stopWorker = undefined;
    const polls = Number(workerEnv.RUNBOAT_WORKFLOW_TASK_POLLS ?? 20);
    const floorSeconds = await measureAdoptionFloor({
      client,
      temporalAddress: temporal.address,
      temporalNamespace: temporal.namespace,
      count,
      concurrency: 16,
      workflowTaskPolls: polls,
      log: (line) => console.log(`[bench] ${line}`),
    });
    const lines = [
      '# Adoption',
      '',
      `${new Date().toISOString()}, ${process.platform} ${process.arch}, node ${process.version}; sandbox (kwok cluster, Temporal dev server with SQLite), one worker, adoption rounds every 1 s.`,
      '',
      `- ${count} build Deployments written as the Python runboat writes them, adopted by a starting worker: ${firstAdoption.toFixed(1)} s`,
      `- the same ${count} adopted back after the Temporal server restarted with its database deleted: ${afterWipe.toFixed(1)} s from the wipe (server restart included)`,
      `- the floor: ${count} empty workflows started 16 at a time, each running one task with a search attribute and a local activity, on a worker of ${polls} workflow task polls (the builds worker stopped): ${floorSeconds.toFixed(1)} s (${(count / floorSeconds).toFixed(0)}/s)`,
      '',
    ];
    console.log(lines.join('\n'));
    const reports = join(dirname(fileURLToPath(import.meta.url)), 'reports');
    await mkdir(reports, { recursive: true });
    await writeFile(
      join(reports, 'adoption.json'),
      JSON.stringify(
        {
          builds: count,
          firstAdoptionSeconds: firstAdoption,
          afterWipeSeconds: afterWipe,
          floorSeconds,
        },
        null,
        2,
      ) + '\n',
    );
    await writeFile(join(reports, 'adoption.md'), lines.join('\n'));
    await client.connection.close();
  } finally {
    await stopWorker?.();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
