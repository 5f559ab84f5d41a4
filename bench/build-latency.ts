/**
 * Benchmark of the latency of a build's transitions on the real sandbox, with a real worker and a
 * real API process:
 *
 * 1. W webhooks (default 20), one at a time, each for a new commit: the time from the delivery
 *    being sent to the build's Deployment being seen.
 * 2. N builds (default 50) are requested at once; for each, the time from its init Job being seen
 *    Complete to its Deployment being seen `stopped` (init-status succeeded): what the
 *    orchestrator adds after the init work itself is done. With more builds than init slots,
 *    also the time an init slot takes to change hands: an init Job seen Complete → the next
 *    queued build's init Job seen created (first in, first out).
 * 3. M of them (default 20) are started one at a time; for each, the time from the start request
 *    to the Deployment being seen scaled, and from the pod being seen Ready to the Deployment
 *    being seen `started`: what the orchestrator adds to the pod's own readiness.
 *
 * Every instant is taken by this process's own watches, on one clock. Prints the figures and
 * writes bench/reports/build-latency.{json,md}.
 *
 *   npx tsx bench/build-latency.ts [--webhooks 20] [--builds 50] [--starts 20] [--slots 10]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Watch, type V1Deployment, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { annotations, BUILD_LABEL, JOB_KIND_LABEL, STATUS_LABEL } from '../domain/build.js';
import { startUpdate, stopUpdate } from '../domain/messages.js';
import { buildName } from '../domain/names.js';
import { createKubeClients } from '../lib/kube.js';
import { connectClient, ensureBuild } from '../lib/temporal.js';
import { startSandbox } from '../dev/sandbox.js';
import { deliver, pushPayload } from '../dev/webhook-deliveries.js';
import { spawnApi, spawnWorker } from '../dev/worker-process.js';
import { describeMachine, FirstSeen, summary, Transitions, writeReport } from './bench-kit.js';

const { values: args } = parseArgs({
  options: {
    webhooks: { type: 'string', default: '20' },
    builds: { type: 'string', default: '50' },
    starts: { type: 'string', default: '20' },
    slots: { type: 'string', default: '10' },
  },
});
const webhooks = Number(args.webhooks);
const builds = Number(args.builds);
const starts = Math.min(Number(args.starts), builds);
const slots = Number(args.slots);
const SECRET = 'bench-secret';

async function main(): Promise<void> {
  const sandbox = await startSandbox({ log: (line) => console.log(`[sandbox] ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-'));
  const stops: (() => Promise<string>)[] = [];
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
    const env = {
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
    };
    const worker = await spawnWorker(env, join(work, 'worker.log'));
    stops.push(() => worker.stop());
    const api = await spawnApi(
      { ...env, RUNBOAT_API_PORT: '0', RUNBOAT_WEBHOOK_SECRET: SECRET },
      join(work, 'api.log'),
    );
    stops.push(() => api.stop());
    const client = await connectClient(temporal);

    const deploymentSeen = new FirstSeen();
    const jobCreated = new FirstSeen();
    const jobComplete = new FirstSeen();
    const deploymentStopped = new FirstSeen();
    const scaled = new Transitions();
    const started = new Transitions();
    const ready = new Transitions();
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
        const build = job.metadata?.labels?.[BUILD_LABEL];
        if (!build) return;
        jobCreated.mark(build);
        const complete = job.status?.conditions?.some(
          (c) => c.type === 'Complete' && c.status === 'True',
        );
        if (complete) jobComplete.mark(build);
      },
    );
    await watch<V1Deployment>(
      `/apis/apps/v1/namespaces/${namespace}/deployments`,
      BUILD_LABEL,
      (deployment) => {
        const name = deployment.metadata?.name ?? '';
        deploymentSeen.mark(name);
        const status = deployment.metadata?.labels?.[STATUS_LABEL];
        const init = deployment.metadata?.annotations?.[annotations.initStatus];
        if (status === 'stopped' && init === 'succeeded') deploymentStopped.mark(name);
        scaled.set(name, (deployment.spec?.replicas ?? 0) > 0);
        started.set(name, status === 'started');
      },
    );
    await watch<V1Pod>(`/api/v1/namespaces/${namespace}/pods`, `!${JOB_KIND_LABEL}`, (pod) => {
      const build = pod.metadata?.labels?.[BUILD_LABEL];
      const isReady = pod.status?.conditions?.some(
        (c) => c.type === 'Ready' && c.status === 'True',
      );
      if (build) ready.set(build, isReady === true);
    });

    console.log(`[bench] ${webhooks} webhooks, one at a time`);
    const webhookToDeployment: number[] = [];
    const webhookBuilds: string[] = [];
    for (let index = 0; index < webhooks; index++) {
      const payload = pushPayload({
        repo: 'Acme/Hooks',
        branch: `hook-${index}`,
        after: randomBytes(20).toString('hex'),
      });
      const t0 = performance.now();
      const answer = await deliver(`${api.url}/webhooks/github`, 'push', payload, SECRET);
      const name = (answer.body as { build?: string } | undefined)?.build;
      if (answer.status >= 300 || !name) throw new Error(`webhook: ${answer.status}`);
      webhookBuilds.push(name);
      webhookToDeployment.push((await deploymentSeen.waitFor(name, 60_000)) - t0);
    }
    // The burst below starts with every init slot free.
    for (const name of webhookBuilds) await deploymentStopped.waitFor(name, 600_000);

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
    // Each Job beyond the first `slots` took the slot of the k-th Job to complete.
    const completions = names.map((name) => jobComplete.at.get(name) ?? NaN).sort((a, b) => a - b);
    const creations = names.map((name) => jobCreated.at.get(name) ?? NaN).sort((a, b) => a - b);
    const handovers = creations.slice(slots).map((created, k) => created - (completions[k] ?? NaN));

    const startToScaled: number[] = [];
    const readyToStarted: number[] = [];
    const startToStarted: number[] = [];
    for (const name of names.slice(0, starts)) {
      const handle = client.workflow.getHandle(name);
      const t0 = performance.now();
      await handle.executeUpdate(startUpdate);
      const isStarted = await started.waitFor(name, t0, 60_000);
      const isScaled = await scaled.waitFor(name, t0, 1000);
      const isReady = await ready.waitFor(name, t0, 1000);
      startToScaled.push(isScaled - t0);
      readyToStarted.push(isStarted - isReady);
      startToStarted.push(isStarted - t0);
      await handle.executeUpdate(stopUpdate);
    }

    const report = {
      date: new Date().toISOString(),
      machine: describeMachine(),
      webhooks,
      webhookToDeploymentMs: summary(webhookToDeployment),
      builds,
      initSlots: slots,
      allBuildsStoppedSeconds: allStoppedMs / 1000,
      initCompleteToStoppedMs: summary(initLatencies),
      initSlotHandoverMs: summary(handovers),
      starts,
      startRequestToScaledMs: summary(startToScaled),
      podReadyToStartedMs: summary(readyToStarted),
      startRequestToStartedMs: summary(startToStarted),
    };
    const fmt = (s: ReturnType<typeof summary>) =>
      `median ${s.median.toFixed(0)} ms, p95 ${s.p95.toFixed(0)} ms, p99 ${s.p99.toFixed(0)} ms (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)}, n=${s.n})`;
    const lines = [
      `# Build lifecycle latency`,
      '',
      `${report.date}, ${report.machine}, sandbox (kwok cluster, Temporal dev server); one worker and one API process.`,
      '',
      '`npx tsx bench/build-latency.ts` ([bench/build-latency.ts](../build-latency.ts))',
      '',
      `- webhook sent → build Deployment exists (${webhooks} webhooks, one at a time): ${fmt(report.webhookToDeploymentMs)}`,
      `- ${builds} builds requested at once, ${slots} init slots: all stopped after ${report.allBuildsStoppedSeconds.toFixed(1)} s`,
      `- init Job Complete → Deployment \`stopped\`: ${fmt(report.initCompleteToStoppedMs)}`,
      `- init slot handed over (a Job Complete → the next queued build's Job created): ${fmt(report.initSlotHandoverMs)}`,
      `- start request → Deployment scaled: ${fmt(report.startRequestToScaledMs)}`,
      `- pod Ready → Deployment \`started\`: ${fmt(report.podReadyToStartedMs)}`,
      `- start request → Deployment \`started\`: ${fmt(report.startRequestToStartedMs)}`,
      '',
    ];
    console.log(lines.join('\n'));
    await writeReport('build-latency', report, lines.join('\n'));
    await client.connection.close();
  } finally {
    for (const controller of watches) controller.abort();
    for (const stop of stops.reverse()) await stop();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
