/**
 * Benchmark of the worker's start: from process start to `worker running` (polling both task
 * queues, the fleet signalled), three times each from the sources through tsx (the workflows
 * bundled with webpack at start) and from the release in dist/ (the prebuilt bundle), against a
 * fresh sandbox. Needs `npm run build` first. Writes bench/reports/worker-start.{json,md}.
 *
 *   npm run build && npx tsx bench/worker-start.ts [--runs 3]
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startSandbox } from '../dev/sandbox.js';
import { spawnWorker } from '../dev/worker-process.js';
import { createKubeClients } from '../lib/kube.js';
import { median } from './bench-kit.js';

const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
const runs = Number(args.runs);
const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

async function main(): Promise<void> {
  if (!existsSync(join(projectRoot, 'dist', 'workflow-bundle.js'))) {
    throw new Error('no release in dist/: run `npm run build` first');
  }
  const sandbox = await startSandbox({ log: (line) => console.log(`[sandbox] ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-'));
  const results: Record<'source' | 'dist', number[]> = { source: [], dist: [] };
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
    // Alternating, so that a slower spell of the machine weighs on both alike.
    for (let run = 0; run < runs; run++) {
      for (const from of ['source', 'dist'] as const) {
        const logFile = join(work, `worker-${from}-${run}.log`);
        const started = Date.now();
        const worker = await spawnWorker(env, logFile, 120_000, { from });
        const line = (await readFile(logFile, 'utf8'))
          .split('\n')
          .find((entry) => entry.includes('worker running'));
        const runningAt = (JSON.parse(line ?? '{}') as { time?: number }).time ?? Date.now();
        results[from].push(runningAt - started);
        console.log(`[bench] ${from} run ${run + 1}: ${runningAt - started} ms`);
        await worker.stop('SIGTERM');
      }
    }
  } finally {
    await sandbox.stop();
  }
  const report = {
    date: new Date().toISOString(),
    runs,
    cpus: (await import('node:os')).cpus().length,
    node: process.version,
    sourceMs: results.source,
    distMs: results.dist,
    sourceMedianMs: median(results.source),
    distMedianMs: median(results.dist),
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
      'from process start to the `worker running` log line (both roles polling), against a sandbox.',
      '',
      '| worker started with | median | each start |',
      '| --- | --- | --- |',
      `| \`node --import tsx worker/main.ts\` (workflows bundled at start) | ${seconds(report.sourceMedianMs)} | ${results.source.map(seconds).join(', ')} |`,
      `| \`node dist/worker/main.js\` (prebuilt bundle) | ${seconds(report.distMedianMs)} | ${results.dist.map(seconds).join(', ')} |`,
      '',
    ].join('\n'),
  );
  console.log(`[bench] median: source ${report.sourceMedianMs} ms, dist ${report.distMedianMs} ms`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
