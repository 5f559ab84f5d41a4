/**
 * Benchmark of the GitHub webhook on the real sandbox: 1,000 signed push deliveries of distinct
 * commits (each starts a build workflow), sent one at a time and then 10 at a time, timed from
 * the request to the API's answer. No worker runs, so the figure is what a webhook waits for: the
 * API and Temporal accepting the build, not Kubernetes. Writes bench/reports/webhook-latency.*.
 *
 *   npx tsx bench/webhook-latency.ts [--deliveries 1000]
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startSandbox } from '../dev/sandbox.js';
import { spawnApi } from '../dev/worker-process.js';
import { createKubeClients } from '../lib/kube.js';
import { deliver, pushPayload } from '../dev/webhook-deliveries.js';
import { percentile } from './bench-kit.js';

const { values: args } = parseArgs({
  options: { deliveries: { type: 'string', default: '1000' } },
});
const deliveries = Number(args.deliveries);
const SECRET = 'bench-secret';

async function run(url: string, count: number, concurrency: number, prefix: string) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const index = next++;
        const payload = pushPayload({
          repo: 'Acme/Bench',
          branch: `${prefix}-${index % 50}`,
          after: randomBytes(20).toString('hex'),
        });
        const t0 = performance.now();
        const answer = await deliver(url, 'push', payload, SECRET, `${prefix}-${index}`);
        latencies.push(performance.now() - t0);
        if (answer.status !== 202) throw new Error(`delivery ${index}: ${answer.status}`);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    deliveries: count,
    concurrency,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: Math.max(...latencies),
    perSecond: count / seconds,
  };
}

async function main(): Promise<void> {
  const sandbox = await startSandbox({ log: (line) => console.log(`[sandbox] ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-'));
  let stopApi: (() => Promise<string>) | undefined;
  try {
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    await kube.core.createNamespace({ body: { metadata: { name: 'bench' } } });
    const reposFile = join(work, 'repos.yaml');
    await writeFile(
      reposFile,
      JSON.stringify([{ repo: 'acme/bench', branch: '.*', builds: [{ image: 'x:1' }] }]),
    );
    const api = await spawnApi(
      {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        RUNBOAT_TEMPORAL_ADDRESS: sandbox.temporal.address,
        RUNBOAT_BUILDS_TASK_QUEUE: 'bench-builds',
        RUNBOAT_BUILD_NAMESPACE: 'bench',
        RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
        RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
        RUNBOAT_REPOS_FILE: reposFile,
        RUNBOAT_API_PORT: '0',
        RUNBOAT_WEBHOOK_SECRET: SECRET,
      },
      join(work, 'api.log'),
    );
    stopApi = () => api.stop();
    const url = `${api.url}/webhooks/github`;
    await run(url, 50, 1, 'warmup');
    const sequential = await run(url, deliveries, 1, 'seq');
    const concurrent = await run(url, deliveries, 10, 'par');
    const line = (r: typeof sequential) =>
      `- ${r.deliveries} deliveries, ${r.concurrency} at a time: p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms, ${r.perSecond.toFixed(0)}/s`;
    const lines = [
      '# Webhook latency',
      '',
      `${new Date().toISOString()}, ${process.platform} ${process.arch}, node ${process.version}; sandbox Temporal dev server (SQLite); every delivery a new commit, so a new build workflow.`,
      '',
      line(sequential),
      line(concurrent),
      '',
    ];
    console.log(lines.join('\n'));
    const reports = join(dirname(fileURLToPath(import.meta.url)), 'reports');
    await mkdir(reports, { recursive: true });
    await writeFile(
      join(reports, 'webhook-latency.json'),
      JSON.stringify({ sequential, concurrent }, null, 2) + '\n',
    );
    await writeFile(join(reports, 'webhook-latency.md'), lines.join('\n'));
  } finally {
    await stopApi?.();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
