/**
 * Benchmark of the worker's start: from process start to `worker running` (polling both task
 * queues, the fleet signalled), three times each from the sources through tsx (the workflows
 * bundled with webpack at start) and from the release in dist/ (the prebuilt bundle), against a
 * fresh sandbox. Needs `npm run build` first. Writes bench/reports/worker-start.{json,md}.
 *
 *   npm run build && npx tsx bench/worker-start.ts [--runs 3] [--builds N] [--release DIR]
 *
 * `--builds N`: N build Deployments, adopted first. `--release DIR`: the release in DIR/dist
 * started in place of the sources (a before and after).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startSandbox } from '../dev/sandbox.js';
import { spawnWorker } from '../dev/worker-process.js';
import { createKubeClients } from '../lib/kube.js';
import { connectClient, ensureBuild } from '../lib/temporal.js';
import { buildName } from '../domain/names.js';
import { legacyDeployment, median } from './bench-kit.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    /** Build Deployments in the namespace, adopted before the starts are timed. */
    builds: { type: 'string', default: '0' },
    /** A second release (a directory holding a `dist/`) to start instead of the sources. */
    release: { type: 'string' },
  },
});
const runs = Number(args.runs);
const builds = Number(args.builds);
const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

async function main(): Promise<void> {
  if (!existsSync(join(projectRoot, 'dist', 'workflow-bundle.js'))) {
    throw new Error('no release in dist/: run `npm run build` first');
  }
  const sandbox = await startSandbox({ log: (line) => console.log(`[sandbox] ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-'));
  const results: Record<'source' | 'dist', number[]> = { source: [], dist: [] };
  const firstDeployed: Record<'source' | 'dist', number[]> = { source: [], dist: [] };
  try {
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    const namespace = 'bench-worker-start';
    await kube.core.createNamespace({ body: { metadata: { name: namespace } } });
    const reposFile = join(work, 'repos.yaml');
    await writeFile(
      reposFile,
      JSON.stringify([{ repo: '.*', branch: '.*', builds: [{ image: 'x:1' }] }]),
    );
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUNBOAT_TEMPORAL_ADDRESS: sandbox.temporal.address,
      RUNBOAT_TEMPORAL_NAMESPACE: sandbox.temporal.namespace,
      RUNBOAT_BUILDS_TASK_QUEUE: 'bench-builds',
      RUNBOAT_INIT_TASK_QUEUE: 'bench-init',
      RUNBOAT_BUILD_NAMESPACE: namespace,
      RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
      RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
      RUNBOAT_REPOS_FILE: reposFile,
    };
    const client = await connectClient({
      address: sandbox.temporal.address,
      namespace: sandbox.temporal.namespace,
    });
    if (builds > 0) {
      console.log(`[bench] writing ${builds} build Deployments`);
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < builds) {
            const i = next++;
            await kube.apps.createNamespacedDeployment({
              namespace,
              body: legacyDeployment({
                name: `b${randomBytes(16).toString('hex')}`,
                repo: 'acme/legacy',
                targetBranch: `branch-${i % 40}`,
                gitCommit: randomBytes(20).toString('hex'),
                container: { name: 'odoo', image: 'odoo:15.0' },
              }),
            });
          }
        }),
      );
      // Adopted once, so that each timed start finds a workflow for every build.
      const adopting = await spawnWorker(env, join(work, 'adopting.log'), 300_000, {
        from: 'dist',
      });
      for (;;) {
        const { count } = await client.workflowService.countWorkflowExecutions({
          namespace: sandbox.temporal.namespace,
          query: `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running' AND RunboatStatus IS NOT NULL`,
        });
        if ((count?.toNumber() ?? 0) >= builds) break;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      await adopting.stop('SIGTERM');
      console.log(`[bench] ${builds} builds adopted`);
    }
    const temporal = {
      address: sandbox.temporal.address,
      namespace: sandbox.temporal.namespace,
      buildsTaskQueue: 'bench-builds',
      initTaskQueue: 'bench-init',
    };
    /** A build asked for as the process starts: the time from the start to its Deployment. */
    const firstBuild = async (started: number, label: string): Promise<number> => {
      const commit = {
        repo: 'acme/legacy',
        targetBranch: `start-${label}`,
        pr: null,
        gitCommit: randomBytes(20).toString('hex'),
      };
      await ensureBuild(client, temporal, { commit, trigger: { kind: 'api' } });
      for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
        const found = await kube.apps
          .readNamespacedDeployment({ name: buildName(commit), namespace })
          .then(
            () => true,
            () => false,
          );
        if (found) return Date.now() - started;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`the build of ${label} has no Deployment after 120 s`);
    };
    // Alternating, so that a slower spell of the machine weighs on both alike.
    for (let run = 0; run < runs; run++) {
      for (const from of ['source', 'dist'] as const) {
        const logFile = join(work, `worker-${from}-${run}.log`);
        const started = Date.now();
        const deployed = firstBuild(started, `${from}-${run}`);
        const spawn =
          from === 'dist'
            ? { from }
            : args.release
              ? ({ from: 'dist', releaseDir: args.release } as const)
              : { from };
        const worker = await spawnWorker(env, logFile, 300_000, spawn);
        const line = (await readFile(logFile, 'utf8'))
          .split('\n')
          .find((entry) => entry.includes('worker running'));
        const runningAt = (JSON.parse(line ?? '{}') as { time?: number }).time ?? Date.now();
        results[from].push(runningAt - started);
        firstDeployed[from].push(await deployed);
        console.log(
          `[bench] ${from} run ${run + 1}: running after ${runningAt - started} ms, ` +
            `a build asked for at the start deployed after ${firstDeployed[from].at(-1)} ms`,
        );
        await worker.stop('SIGTERM');
      }
    }
    await client.connection.close();
  } finally {
    await sandbox.stop();
  }
  const report = {
    date: new Date().toISOString(),
    runs,
    builds,
    release: args.release ?? null,
    cpus: (await import('node:os')).cpus().length,
    node: process.version,
    sourceMs: results.source,
    distMs: results.dist,
    sourceMedianMs: median(results.source),
    distMedianMs: median(results.dist),
    sourceFirstDeployedMs: firstDeployed.source,
    distFirstDeployedMs: firstDeployed.dist,
  };
  const reports = join(projectRoot, 'bench', 'reports');
  await mkdir(reports, { recursive: true });
  await writeFile(join(reports, 'worker-start.json'), `${JSON.stringify(report, null, 2)}\n`);
  const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  await writeFile(
    join(reports, 'worker-start.md'),
    [
      '# Worker start time',
      '',
      `${report.date}, ${report.cpus} CPUs, Node ${report.node}, ${runs} starts each, alternating,`,
      `from process start to the \`worker running\` log line (both roles polling), against a sandbox with ${builds} builds.`,
      '',
      'Also, a build asked for (through Temporal) as each process starts: the time from the start to its Deployment.',
      '',
      '| worker started with | median | each start | a build asked for at the start: deployed after |',
      '| --- | --- | --- | --- |',
      `| ${args.release ? `\`node ${args.release}/dist/worker/main.js\`` : '`node --import tsx worker/main.ts` (workflows bundled at start)'} | ${seconds(report.sourceMedianMs)} | ${results.source.map(seconds).join(', ')} | ${firstDeployed.source.map(seconds).join(', ')} |`,
      `| \`node dist/worker/main.js\` (prebuilt bundle) | ${seconds(report.distMedianMs)} | ${results.dist.map(seconds).join(', ')} | ${firstDeployed.dist.map(seconds).join(', ')} |`,
      '',
    ].join('\n'),
  );
  console.log(`[bench] median: source ${report.sourceMedianMs} ms, dist ${report.distMedianMs} ms`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
