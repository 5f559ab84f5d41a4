/**
 * Benchmark of the build lifecycle on the real sandbox, with a real worker process:
 *
 * 1. N builds (default 50) are requested at once; for each, the time from its init Job being seen
 *    Complete to its Deployment being seen `stopped` (init-status succeeded): what the
 *    orchestrator adds after the init work itself is done.
 * 2. M of them (default 20) are started one at a time; for each, the time from the pod being seen
 *    Ready to the Deployment being seen `started`: what the orchestrator adds to the pod's own
 *    readiness.
 *
 * Every instant is taken by this process's own watches, on one clock. Prints the figures and
 * writes bench/reports/build-latency.{json,md}.
 *
 *   npx tsx bench/build-latency.ts [--builds 50] [--starts 20] [--slots 10]
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Watch, type V1Deployment, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { annotations, BUILD_LABEL, JOB_KIND_LABEL, STATUS_LABEL } from '../domain/build.js';
import { startUpdate, stopUpdate } from '../domain/messages.js';
import { buildName } from '../domain/names.js';
import { createKubeClients } from '../lib/kube.js';
import { connectClient, ensureBuild } from '../lib/temporal.js';
import { startSandbox } from '../dev/sandbox.js';
import { spawnWorker } from '../dev/worker-process.js';
import { FirstSeen, summary } from './bench-kit.js';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: '50' },
    starts: { type: 'string', default: '20' },
    slots: { type: 'string', default: '10' },
  },
});
const builds = Number(args.builds);
const starts = Math.min(Number(args.starts), builds);
const slots = Number(args.slots);

async function main(): Promise<void> {
  const sandbox = await startSandbox({ log: (line) => console.log(`[sandbox] ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-'));
  let stopWorker: (() => Promise<string>) | undefined;
  const watches: AbortController[] = [];
  try {
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    const namespace = `bench-${randomBytes(3).toString('hex')}`;
    await kube.core.createNamespace({ body: { metadata: { name: namespace } } });
    const reposFile = join(work, 'repos.yaml');
    await writeFile(
      reposFile,
      JSON.stringify([{ repo: '.*', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] }]),
    );
    const temporal = {
      address: sandbox.temporal.address,
      namespace: sandbox.temporal.namespace,
      buildsTaskQueue: `bench-builds-${namespace}`,
      initTaskQueue: `bench-init-${namespace}`,
    };
    const worker = await spawnWorker(
      {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        RUNBOAT_TEMPORAL_ADDRESS: temporal.address,
        RUNBOAT_BUILDS_TASK_QUEUE: temporal.buildsTaskQueue,
        RUNBOAT_INIT_TASK_QUEUE: temporal.initTaskQueue,
        RUNBOAT_MAX_INITIALIZING: String(slots),
        RUNBOAT_BUILD_NAMESPACE: namespace,
        RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
        RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
        RUNBOAT_REPOS_FILE: reposFile,
        RUNBOAT_LOG_LEVEL: 'info',
      },
      join(work, 'worker.log'),
    );
    stopWorker = () => worker.stop();
    const client = await connectClient(temporal);

    const jobComplete = new FirstSeen();
    const deploymentStopped = new FirstSeen();
    const deploymentStarted = new FirstSeen();
    const podReady = new FirstSeen();
    const watch = async <T>(path: string, selector: string, onEvent: (object: T) => void) => {
      watches.push(
        await new Watch(kube.config).watch(
          path,
          { labelSelector: selector },
          (_phase, object: T) => onEvent(object),
          () => undefined,
        ),
      );
    };
    await watch<V1Job>(
      `/apis/batch/v1/namespaces/${namespace}/jobs`,
      `${JOB_KIND_LABEL}=initialize`,
      (job) => {
        const complete = job.status?.conditions?.some(
          (c) => c.type === 'Complete' && c.status === 'True',
        );
        const build = job.metadata?.labels?.[BUILD_LABEL];
        if (complete && build) jobComplete.mark(build);
      },
    );
    await watch<V1Deployment>(
      `/apis/apps/v1/namespaces/${namespace}/deployments`,
      BUILD_LABEL,
      (deployment) => {
        const name = deployment.metadata?.name ?? '';
        const status = deployment.metadata?.labels?.[STATUS_LABEL];
        const init = deployment.metadata?.annotations?.[annotations.initStatus];
        if (status === 'stopped' && init === 'succeeded') deploymentStopped.mark(name);
        if (status === 'started') deploymentStarted.mark(name);
      },
    );
    await watch<V1Pod>(`/api/v1/namespaces/${namespace}/pods`, `!${JOB_KIND_LABEL}`, (pod) => {
      const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      const build = pod.metadata?.labels?.[BUILD_LABEL];
      if (ready && build) podReady.mark(build);
    });

    console.log(`[bench] requesting ${builds} builds (${slots} init slots)`);
    const requested = performance.now();
    const names: string[] = [];
    await Promise.all(
      Array.from({ length: builds }, async (_, index) => {
        const commit = {
          repo: 'acme/bench',
          targetBranch: `branch-${index}`,
          pr: null,
          gitCommit: randomBytes(20).toString('hex'),
        };
        names.push(buildName(commit));
        await ensureBuild(client, temporal, { commit, trigger: { kind: 'api' } });
      }),
    );
    const initLatencies: number[] = [];
    for (const name of names) {
      const stopped = await deploymentStopped.waitFor(name, 600_000);
      const complete = await jobComplete.waitFor(name, 1000);
      initLatencies.push(stopped - complete);
    }
    const allStoppedMs = performance.now() - requested;
    console.log(`[bench] ${builds} builds stopped in ${(allStoppedMs / 1000).toFixed(1)} s`);

    const startOverheads: number[] = [];
    const startTotals: number[] = [];
    for (const name of names.slice(0, starts)) {
      const handle = client.workflow.getHandle(name);
      const t0 = performance.now();
      await handle.executeUpdate(startUpdate);
      const started = await deploymentStarted.waitFor(name, 60_000);
      const ready = await podReady.waitFor(name, 1000);
      startOverheads.push(started - ready);
      startTotals.push(started - t0);
      await handle.executeUpdate(stopUpdate);
    }

    const report = {
      date: new Date().toISOString(),
      machine: `${process.platform} ${process.arch}, node ${process.version}`,
      builds,
      initSlots: slots,
      allBuildsStoppedSeconds: allStoppedMs / 1000,
      initCompleteToStoppedMs: summary(initLatencies),
      starts,
      podReadyToStartedMs: summary(startOverheads),
      startRequestToStartedMs: summary(startTotals),
    };
    const fmt = (s: ReturnType<typeof summary>) =>
      `median ${s.median.toFixed(0)} ms, p95 ${s.p95.toFixed(0)} ms (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)}, n=${s.n})`;
    const lines = [
      `# Build lifecycle latency`,
      '',
      `${report.date}, ${report.machine}, sandbox (kwok cluster, Temporal dev server).`,
      '',
      `- ${builds} builds requested at once, ${slots} init slots: all stopped after ${report.allBuildsStoppedSeconds.toFixed(1)} s`,
      `- init Job Complete → Deployment \`stopped\`: ${fmt(report.initCompleteToStoppedMs)}`,
      `- pod Ready → Deployment \`started\`: ${fmt(report.podReadyToStartedMs)}`,
      `- start request → Deployment \`started\`: ${fmt(report.startRequestToStartedMs)}`,
      '',
    ];
    console.log(lines.join('\n'));
    const reports = join(dirname(fileURLToPath(import.meta.url)), 'reports');
    await mkdir(reports, { recursive: true });
    await writeFile(join(reports, 'build-latency.json'), JSON.stringify(report, null, 2) + '\n');
    await writeFile(join(reports, 'build-latency.md'), lines.join('\n'));
    await client.connection.close();
  } finally {
    for (const controller of watches) controller.abort();
    await stopWorker?.();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
