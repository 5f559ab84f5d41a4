/**
 * Memory of a builds worker as the number of builds grows, on the real sandbox: build
 * Deployments (written as the Python runboat writes them) are added in steps (default 100,
 * 1,000 and 10,000, the target of a farm); at each step a builds worker adopts them all, settles,
 * and its resident memory (from /proc) and V8 heap (from its /metrics) are sampled once a
 * second. With `--churn-seconds`, the last step is followed by churn (builds started and stopped
 * through their workflows' updates, as the API sends them, the fleet stopping the least recently
 * started beyond its limit), then sampled again. The worker runs from the release in `dist/`
 * (`npm run build` first) as in production, or from the sources with `--from source`. Writes
 * bench/reports/worker-memory.{json,md}.
 *
 *   npx tsx bench/worker-memory.ts [--builds 100,1000,10000] [--from dist|source]
 *     [--release-dir DIR] [--settle-seconds 30] [--samples 15] [--node-options '...']
 *     [--churn-seconds 0] [--churn-rate 4] [--env NAME=VALUE ...] [--report worker-memory]
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { V1Deployment } from '@kubernetes/client-node';
import type { Client } from '@temporalio/client';
import { BUILD_LABEL } from '../domain/build.js';
import { startUpdate, stopUpdate } from '../domain/messages.js';
import { startSandbox } from '../dev/sandbox.js';
import { spawnWorker } from '../dev/worker-process.js';
import { createKubeClients, leanDeployment, type KubeClients } from '../lib/kube.js';
import { connectClient } from '../lib/temporal.js';
import {
  describeMachine,
  legacyDeployment,
  machine,
  median,
  sampleProcess,
  workerMetricsUrl,
  writeReport,
} from './bench-kit.js';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: '100,1000,10000' },
    from: { type: 'string', default: 'dist' },
    'release-dir': { type: 'string' },
    'settle-seconds': { type: 'string', default: '30' },
    samples: { type: 'string', default: '15' },
    'node-options': { type: 'string', default: '' },
    env: { type: 'string', multiple: true, default: [] },
    report: { type: 'string', default: 'worker-memory' },
    'churn-seconds': { type: 'string', default: '0' },
    'churn-rate': { type: 'string', default: '4' },
  },
});
const steps = args.builds.split(',').map(Number);
const from = args.from === 'source' ? 'source' : 'dist';
const releaseDir = args['release-dir'] ? resolve(args['release-dir']) : undefined;
const settleMs = Number(args['settle-seconds']) * 1000;
const sampleCount = Number(args.samples);
const churnSeconds = Number(args['churn-seconds']);
const churnRate = Number(args['churn-rate']);
const extraEnv = Object.fromEntries(
  args.env.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
);
const MiB = 2 ** 20;

/** One step's figures: medians of the samples, in MiB. */
interface StepFigures {
  builds: number;
  /** After the churn: the builds started and stopped in it. */
  churn?: ChurnCounts;
  samples: number;
  rssMiB: number;
  heapUsedMiB: number;
  /** The lowest of the samples: closest to what is live after a collection. */
  heapUsedLowestMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  /** RSS outside V8's heap: native code and buffers, Temporal's core (Rust), the allocator. */
  outsideHeapMiB: number;
  adoptSeconds: number;
}

/**
 * Writes build Deployments `from`..`to` (exclusive) as the Python runboat leaves them; resolves
 * with their names.
 */
async function writeDeployments(
  kube: KubeClients,
  namespace: string,
  from: number,
  to: number,
): Promise<string[]> {
  const names: string[] = [];
  let next = from;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < to) {
        const index = next++;
        const name = `b${randomBytes(16).toString('hex')}`;
        names.push(name);
        await kube.apps.createNamespacedDeployment({
          namespace,
          body: legacyDeployment({
            name,
            repo: 'acme/legacy',
            targetBranch: `branch-${index % 40}`,
            gitCommit: randomBytes(20).toString('hex'),
            container: {
              name: 'odoo',
              image: 'odoo:15.0',
              env: [
                { name: 'PGDATABASE', value: name },
                { name: 'ADDONS_DIR', value: '/mnt/data/odoo-addons-dir' },
              ],
              ports: [{ containerPort: 8069 }],
              resources: { requests: { cpu: '100m', memory: '512Mi' } },
            },
          }),
        });
      }
    }),
  );
  return names;
}

/** What the churn did, and how long its updates took to be answered. */
interface ChurnCounts {
  seconds: number;
  starts: number;
  stops: number;
  refused: number;
  /** Update sent → answered (the build scaled and labelled), start and stop alike. */
  answerMs: { n: number; median: number; p99: number };
}

/**
 * Starts a random build `rate` times a second and stops a random started one at a third of that
 * rate, for `seconds`, through the workflows' updates (as the API does); the fleet stops the
 * least recently started beyond RUNBOAT_MAX_STARTED. Workflows come back from outside the
 * worker's cache, run activities, and leave again: the turnover of a farm in use.
 */
async function churn(
  client: Client,
  names: readonly string[],
  seconds: number,
  rate: number,
): Promise<ChurnCounts> {
  const counts = { seconds, starts: 0, stops: 0, refused: 0 };
  const answered: number[] = [];
  const started: string[] = [];
  const pick = <T>(list: readonly T[]) => list[Math.floor(Math.random() * list.length)] as T;
  const inFlight = new Set<Promise<void>>();
  const send = (name: string, update: typeof startUpdate) => {
    const began = performance.now();
    const sent = client.workflow
      .getHandle(name)
      .executeUpdate(update)
      .then(
        () => {
          answered.push(performance.now() - began);
          if (update === startUpdate) {
            counts.starts++;
            started.push(name);
          } else counts.stops++;
        },
        () => {
          counts.refused++;
        },
      )
      .finally(() => inFlight.delete(sent));
    inFlight.add(sent);
  };
  const until = performance.now() + seconds * 1000;
  for (let tick = 0; performance.now() < until; tick++) {
    send(pick(names), startUpdate);
    if (tick % 3 === 2 && started.length > 0) {
      send(started.splice(Math.floor(Math.random() * started.length), 1)[0] as string, stopUpdate);
    }
    await new Promise((r) => setTimeout(r, 1000 / rate));
  }
  await Promise.all(inFlight);
  answered.sort((a, b) => a - b);
  return {
    ...counts,
    answerMs: {
      n: answered.length,
      median: median(answered),
      p99: answered[Math.min(answered.length - 1, Math.floor(answered.length * 0.99))] ?? NaN,
    },
  };
}

/** The value of an unlabelled Prometheus metric, or NaN. */
function metric(text: string, name: string): number {
  const match = new RegExp(`^${name} ([0-9.e+-]+)`, 'm').exec(text);
  return match ? Number(match[1]) : NaN;
}

async function main(): Promise<void> {
  if (from === 'dist' && !existsSync(join(releaseDir ?? resolve('.'), 'dist', 'worker'))) {
    throw new Error('no release in dist/: run `npm run build` first (or pass --from source)');
  }
  const sandbox = await startSandbox({ log: (line) => console.log(`[sandbox] ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-'));
  let stopWorker: (() => Promise<string>) | undefined;
  try {
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    const namespace = 'bench-memory';
    await kube.core.createNamespace({ body: { metadata: { name: namespace } } });
    const reposFile = join(work, 'repos.yaml');
    await writeFile(
      reposFile,
      JSON.stringify([{ repo: '.*', branch: '.*', builds: [{ image: 'x:1' }] }]),
    );
    const temporal = {
      address: sandbox.temporal.address,
      namespace: sandbox.temporal.namespace,
      buildsTaskQueue: 'bench-builds',
    };
    const logFile = join(work, 'worker.log');
    const worker = await spawnWorker(
      {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        ...(args['node-options'] ? { NODE_OPTIONS: args['node-options'] } : {}),
        RUNBOAT_WORKER_ROLES: 'builds',
        RUNBOAT_TEMPORAL_ADDRESS: temporal.address,
        RUNBOAT_BUILDS_TASK_QUEUE: temporal.buildsTaskQueue,
        RUNBOAT_INIT_TASK_QUEUE: 'bench-init',
        RUNBOAT_BUILD_NAMESPACE: namespace,
        RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
        RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
        RUNBOAT_REPOS_FILE: reposFile,
        RUNBOAT_ADOPT_INTERVAL_SECONDS: '5',
        RUNBOAT_MAX_DEPLOYED: '100000',
        RUNBOAT_WORKER_METRICS_HOST: '127.0.0.1',
        RUNBOAT_LOG_LEVEL: 'info',
        ...extraEnv,
      },
      logFile,
      120_000,
      { from, ...(releaseDir ? { releaseDir } : {}) },
    );
    stopWorker = () => worker.stop();
    const pid = worker.child.pid as number;
    const metricsUrl = await workerMetricsUrl(logFile);
    const client = await connectClient(temporal);
    const running = async () =>
      (
        await client.workflowService.countWorkflowExecutions({
          namespace: temporal.namespace,
          query: `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running'`,
        })
      ).count?.toNumber() ?? 0;

    /** Settles, then samples the worker's memory once a second. */
    const sampleStep = async (builds: number, adoptSeconds: number): Promise<StepFigures> => {
      await new Promise((r) => setTimeout(r, settleMs));
      const samples: { rss: number; used: number; total: number; external: number }[] = [];
      for (let i = 0; i < sampleCount; i++) {
        const [proc, text] = await Promise.all([
          sampleProcess(pid),
          fetch(metricsUrl).then((r) => r.text()),
        ]);
        samples.push({
          rss: proc.rssMiB,
          used: metric(text, 'nodejs_heap_size_used_bytes') / MiB,
          total: metric(text, 'nodejs_heap_size_total_bytes') / MiB,
          external: metric(text, 'nodejs_external_memory_bytes') / MiB,
        });
        await new Promise((r) => setTimeout(r, 1000));
      }
      return {
        builds,
        samples: samples.length,
        rssMiB: median(samples.map((s) => s.rss)),
        heapUsedMiB: median(samples.map((s) => s.used)),
        heapUsedLowestMiB: Math.min(...samples.map((s) => s.used)),
        heapTotalMiB: median(samples.map((s) => s.total)),
        externalMiB: median(samples.map((s) => s.external)),
        outsideHeapMiB: median(samples.map((s) => s.rss - s.total)),
        adoptSeconds,
      };
    };
    const report = (step: StepFigures) =>
      console.log(
        `[bench] ${step.builds} builds${step.churn ? ' after churn' : ''}: RSS ${step.rssMiB.toFixed(0)} MiB, heap used ${step.heapUsedMiB.toFixed(0)} (lowest ${step.heapUsedLowestMiB.toFixed(0)}) / total ${step.heapTotalMiB.toFixed(0)} MiB, outside the heap ${step.outsideHeapMiB.toFixed(0)} MiB`,
      );

    const figures: StepFigures[] = [];
    const names: string[] = [];
    for (const target of steps) {
      console.log(`[bench] writing build Deployments ${names.length + 1}..${target}`);
      names.push(...(await writeDeployments(kube, namespace, names.length, target)));
      const began = performance.now();
      for (let n = 0; n < target; n = await running().catch(() => 0)) {
        if (worker.child.exitCode !== null) throw new Error(`worker exited; log ${logFile}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      const adoptSeconds = (performance.now() - began) / 1000;
      console.log(`[bench] ${target} builds adopted in ${adoptSeconds.toFixed(1)} s; settling`);
      const step = await sampleStep(target, adoptSeconds);
      figures.push(step);
      report(step);
    }
    if (churnSeconds > 0) {
      console.log(`[bench] churn for ${churnSeconds} s, ${churnRate} starts/s`);
      const counts = await churn(client, names, churnSeconds, churnRate);
      console.log(`[bench] churn: ${JSON.stringify(counts)}; settling`);
      const step = { ...(await sampleStep(names.length, 0)), churn: counts };
      figures.push(step);
      report(step);
    }

    // What one cached build Deployment weighs, as the API server sends it and as cached.
    const sample = (
      await kube.apps.listNamespacedDeployment({ namespace, labelSelector: BUILD_LABEL, limit: 50 })
    ).items;
    const bytes = (items: V1Deployment[]) =>
      Math.round(items.reduce((sum, d) => sum + JSON.stringify(d).length, 0) / items.length);
    const deploymentBytes = { full: bytes(sample), lean: bytes(sample.map(leanDeployment)) };
    await client.connection.close();

    const m = machine();
    const env = Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`);
    const setup =
      `${new Date().toISOString()}, ${describeMachine(m)}; sandbox (kwok cluster, Temporal dev server with SQLite); ` +
      `one worker of role \`builds\` run from ${from === 'dist' ? 'the release in dist/ (node)' : 'the sources (tsx)'}` +
      `${args['node-options'] ? `, NODE_OPTIONS \`${args['node-options']}\`` : ''}` +
      `${env.length ? `, ${env.map((e) => `\`${e}\``).join(', ')}` : ''}; adoption rounds every 5 s; ` +
      `each step settles ${settleMs / 1000} s after every build has a running workflow, then ${sampleCount} samples 1 s apart (medians).`;
    const lines = [
      '# Worker memory',
      '',
      setup,
      '',
      '| builds | RSS MiB | V8 heap used MiB (lowest) | V8 heap total MiB | outside the V8 heap MiB | external MiB | adopted in s |',
      '| --: | --: | --: | --: | --: | --: | --: |',
      ...figures.map(
        (f) =>
          `| ${f.builds}${f.churn ? ` after ${f.churn.seconds} s of churn (${f.churn.starts} starts, ${f.churn.stops} stops; update answered: n=${f.churn.answerMs.n}, median ${f.churn.answerMs.median.toFixed(0)} ms, p99 ${f.churn.answerMs.p99.toFixed(0)} ms)` : ''} | ${f.rssMiB.toFixed(0)} | ${f.heapUsedMiB.toFixed(0)} (${f.heapUsedLowestMiB.toFixed(0)}) | ${f.heapTotalMiB.toFixed(0)} | ${f.outsideHeapMiB.toFixed(0)} | ${f.externalMiB.toFixed(0)} | ${f.adoptSeconds.toFixed(1)} |`,
      ),
      '',
      `A build Deployment as listed: ${deploymentBytes.full} bytes of JSON; as the worker caches it: ${deploymentBytes.lean} bytes.`,
      '',
    ];
    console.log(lines.join('\n'));
    await writeReport(
      args.report,
      {
        machine: m,
        from,
        nodeOptions: args['node-options'],
        env: extraEnv,
        settleSeconds: settleMs / 1000,
        steps: figures,
        deploymentBytes,
      },
      lines.join('\n'),
    );
  } finally {
    await stopWorker?.();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
