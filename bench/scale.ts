/**
 * The scale benchmark (`npm run bench:scale`): a sandbox of its own brought to N deployed builds
 * (most adopted from Deployments written as the Python runboat leaves them, the rest through the
 * signed webhook), one builds worker, one init worker and one API as real processes, with
 * `RUNBOAT_MAX_STARTED=150`, `RUNBOAT_MAX_INITIALIZING=20` and `RUNBOAT_MAX_DEPLOYED=N`; then, at
 * N builds, every figure of the scale targets (README, "Scale"; docs/operations.md), a churn of
 * pushes, starts and stops, and the restarts: API, worker, Temporal with its database wiped.
 * Writes bench/reports/scale.{json,md}.
 *
 *   npm run bench:scale -- [--builds 10000] [--churn-seconds 60] [--runs 3] [--starts 20]
 *                          [--idle-seconds 30] [--init-seconds 3] [--from dist|source]
 *
 * `npm run bench:scale` builds the release first: the processes run from `dist/` as in production
 * (`--from source` runs the TypeScript sources through tsx instead).
 *
 * Cheap figures are measured in each of `--runs` runs and reported as the median of the runs'
 * medians and p99s; the fill, the churn, idle, and the three restarts happen once.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Client } from '@temporalio/client';
import { fleetWorkflowId, initSlotsLimitSignal, initSlotsWorkflowId } from '../domain/messages.js';
import { buildName } from '../domain/names.js';
import { buildSearchAttributeKeys } from '../domain/search-attributes.js';
import { RUN_FOR_ANNOTATION } from '../dev/kwok-stages.js';
import { freePort } from '../dev/ports.js';
import { restartTemporal, startSandbox, type Sandbox } from '../dev/sandbox.js';
import { deliver, pushPayload } from '../dev/webhook-deliveries.js';
import { spawnApi, spawnWorker, type WorkerProcess } from '../dev/worker-process.js';
import { createKubeClients, type KubeClients } from '../lib/kube.js';
import { connectClient } from '../lib/temporal.js';
import {
  describeMachine,
  legacyDeployment,
  machine,
  machineBusySeconds,
  median,
  sampleProcess,
  sampleThreads,
  summary,
  workerMetricsUrl,
  writeReport,
} from './bench-kit.js';
import { measureFloors, updateFloorWhile, type Floors } from './floor.js';
import { BenchClient, signedDelivery, timed, type Prepared } from './http-client.js';
import { BuildEvents, ClusterView, readEvents } from './observers.js';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: '10000' },
    'churn-seconds': { type: 'string', default: '60' },
    runs: { type: 'string', default: '3' },
    starts: { type: 'string', default: '20' },
    'idle-seconds': { type: 'string', default: '30' },
    'init-seconds': { type: 'string', default: '3' },
    from: { type: 'string', default: 'dist' },
  },
});
const N = Number(args.builds);
const RUNS = Number(args.runs);
const STARTS = Number(args.starts);
const CHURN_SECONDS = Number(args['churn-seconds']);
const IDLE_SECONDS = Number(args['idle-seconds']);
const INIT_SECONDS = Number(args['init-seconds']);
const FROM = args.from === 'source' ? 'source' : 'dist';
/** 150, as in production; half the builds in a small run. */
const MAX_STARTED = Math.min(150, Math.floor(N / 2));
const MAX_INITIALIZING = 20;
const SECRET = 'bench-secret';
const ADMIN_TOKEN = 'bench-admin-token-0123456789';
/** Webhook builds go to this repo; its init Jobs run `--init-seconds`. */
const CONFIGURED = 'Acme/Shop';
const UNCONFIGURED = 'Other/Unknown';
/**
 * The churn's pushes go to this repo, whose init Jobs run as long as a real init (minutes at OCA;
 * 30 s here): 20 initializing at once then needs a push every 1.5 s, not 7 a second.
 */
const CHURN = 'Acme/Churn';
const CHURN_INIT_SECONDS = 30;
/** The bulk: Deployments of `acme/legacy-<k>`, ~1,000 per repo (the filtered list's size). */
const WEBHOOK_FILL = Math.min(200, Math.max(5, Math.round(N * 0.02)));
const ADOPTED = N - WEBHOOK_FILL;
const LEGACY_REPOS = Math.max(1, Math.ceil(ADOPTED / 1000));

/** The code measured: the commit, and how many files of the working tree differ from it. */
function codeRevision(): string {
  const git = (...argv: string[]) => execFileSync('git', argv, { encoding: 'utf8' }).trim();
  try {
    const changed = git('status', '--porcelain', '--untracked-files=no')
      .split('\n')
      .filter(Boolean);
    return `commit ${git('rev-parse', '--short', 'HEAD')}${changed.length ? ` with ${changed.length} files changed in the working tree` : ''}`;
  } catch {
    return 'not a git checkout';
  }
}

/**
 * Where the sandbox keeps etcd's and Temporal's databases: in memory (tmpfs) unless
 * RUNBOAT_SANDBOX_DIR says otherwise. On this machine's disk, each of their commits waits for an
 * fsync: a 10,000-build fill on disk spent 82 % of its CPU time in I/O wait and adopted 4 builds/s,
 * which measures the disk, not the system (README, "Scale").
 */
const SANDBOX_ROOT =
  process.env.RUNBOAT_SANDBOX_DIR ??
  (existsSync('/dev/shm') ? join('/dev/shm', 'runboat-bench-sandboxes') : undefined);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const log = (line: string) => console.log(`[bench] ${line}`);

/** Everything the phases share. */
interface Bench {
  sandbox: Sandbox;
  work: string;
  namespace: string;
  kube: KubeClients;
  client: Client;
  cluster: ClusterView;
  events: BuildEvents;
  api: WorkerProcess & { url: string };
  buildsWorker: WorkerProcess;
  initWorker: WorkerProcess;
  apiEnv: NodeJS.ProcessEnv;
  workerEnv: NodeJS.ProcessEnv;
  queues: { builds: string; init: string };
  /** Builds asked for through the webhook whose outcome is not seen yet. */
  pending: Set<string>;
}

/** Waits until a condition holds, checking every `everyMs`. */
async function waitUntil(what: string, condition: () => boolean, timeoutMs: number, everyMs = 100) {
  const deadline = now() + timeoutMs;
  while (!condition()) {
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

/** Runs `count` tasks, `concurrency` at a time. */
async function pool(count: number, concurrency: number, task: (index: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/** Sends a signed push; for a configured repo, resolves with the build name the API answered. */
async function push(b: Bench, repo: string, branch: string): Promise<string | undefined> {
  const payload = pushPayload({ repo, branch, after: randomBytes(20).toString('hex') });
  const answer = await deliver(`${b.api.url}/webhooks/github`, 'push', payload, SECRET);
  if (answer.status >= 300)
    throw new Error(`webhook: ${answer.status} ${JSON.stringify(answer.body)}`);
  const build = (answer.body as { build?: string } | undefined)?.build;
  if (build) b.pending.add(build);
  return build;
}

async function api(b: Bench, method: 'GET' | 'POST', path: string) {
  const response = await fetch(`${b.api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  const text = await response.text();
  return { status: response.status, body: text };
}

/** Forgets the pending builds whose outcome the cluster shows. */
function settle(b: Bench): void {
  for (const name of b.pending) {
    const s = b.cluster.deployments.get(name)?.status;
    if (s === 'stopped' || s === 'failed' || s === 'started' || s === 'undeploying') {
      b.pending.delete(name);
    }
  }
}

/** Waits until nothing is queued or initializing; says which builds did not finish if not. */
async function drain(b: Bench, timeoutMs = 600_000): Promise<void> {
  await waitUntil(
    'queued and initializing builds to finish',
    () => {
      settle(b);
      return (
        b.pending.size === 0 &&
        b.cluster.activeInit.size === 0 &&
        b.cluster.count('todo') + b.cluster.count('initializing') === 0
      );
    },
    timeoutMs,
    250,
  ).catch((error: unknown) => {
    const stuck = [
      ...[...b.pending].map(
        (name) =>
          `${name} (webhook; ${b.cluster.deployments.get(name)?.status ?? 'no Deployment'})`,
      ),
      ...b.cluster.named('todo').map((name) => `${name} (todo)`),
      ...b.cluster.named('initializing').map((name) => `${name} (initializing)`),
      ...[...b.cluster.activeInit].map((name) => `${name} (init Job active)`),
    ];
    log(`not finished (${stuck.length}): ${stuck.slice(0, 20).join(', ')}`);
    throw error;
  });
}

/** The processes whose CPU and memory the report gives: ours, and the sandbox's servers. */
async function processes(b: Bench): Promise<Record<string, number>> {
  const pids: Record<string, number> = {
    'builds worker': b.buildsWorker.child.pid ?? 0,
    'init worker': b.initWorker.child.pid ?? 0,
    api: b.api.child.pid ?? 0,
  };
  const info = JSON.parse(await readFile(join(b.sandbox.runDir, 'sandbox.json'), 'utf8')) as {
    temporal: { pid: number };
  };
  pids.temporal = info.temporal.pid;
  const pidDir = join(b.sandbox.kube.workDir, 'clusters', b.sandbox.kube.name, 'pids');
  for (const file of await readdir(pidDir).catch(() => [] as string[])) {
    const pid = Number((await readFile(join(pidDir, file), 'utf8')).trim());
    if (pid) pids[file.replace(/\.pid$/, '')] = pid;
  }
  return pids;
}

const OURS = ['builds worker', 'init worker', 'api'];
const MACHINE = 'whole machine (every process)';

/** CPU seconds of each process so far, and its RSS now. */
async function snapshot(b: Bench) {
  const result: Record<string, { pid: number; cpuSeconds: number; rssMiB: number }> = {};
  for (const [name, pid] of Object.entries(await processes(b))) {
    const sample = await sampleProcess(pid).catch(() => undefined);
    if (sample) result[name] = { pid, ...sample };
  }
  return { at: now(), processes: result, machineBusySeconds: await machineBusySeconds() };
}
type Snapshot = Awaited<ReturnType<typeof snapshot>>;

/** Percent of one core used by each process between two snapshots. */
function cpuBetween(a: Snapshot, z: Snapshot): Record<string, number> {
  const seconds = (z.at - a.at) / 1000;
  const out: Record<string, number> = {};
  for (const [name, end] of Object.entries(z.processes)) {
    const start = a.processes[name];
    // A process restarted in between (Temporal after the wipe) has no comparable CPU time.
    if (start && start.pid === end.pid)
      out[name] = Math.round(((end.cpuSeconds - start.cpuSeconds) / seconds) * 1000) / 10;
  }
  // Everything the machine ran, other users' processes included (at most 100 % × cores).
  out[MACHINE] = Math.round(((z.machineBusySeconds - a.machineBusySeconds) / seconds) * 1000) / 10;
  return out;
}

const mib = (s: Snapshot, name: string) => s.processes[name]?.rssMiB ?? NaN;

/** The machine's CPU and our processes' over a phase (% of one core). */
interface PhaseCpu {
  machine: number;
  ours: number;
  /** This benchmark's own process: the client of the API. */
  client: number;
}

/** Runs a phase and measures the CPU it took: is the machine the limit? */
async function withCpu<T>(b: Bench, phase: () => Promise<T>): Promise<[T, PhaseCpu]> {
  const before = await snapshot(b);
  const clientBefore = process.cpuUsage();
  const result = await phase();
  const after = await snapshot(b);
  const client = process.cpuUsage(clientBefore);
  const cpu = cpuBetween(before, after);
  const ours = OURS.reduce((sum, name) => sum + (cpu[name] ?? 0), 0);
  const clientPercent = (client.user + client.system) / 10 / (after.at - before.at);
  return [
    result,
    {
      machine: cpu[MACHINE] ?? NaN,
      ours: Math.round(ours * 10) / 10,
      client: Math.round(clientPercent * 10) / 10,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Set-up and fill

async function createLegacyDeployments(kube: KubeClients, namespace: string): Promise<void> {
  log(`writing ${ADOPTED} build Deployments as the Python runboat leaves them`);
  const began = now();
  let created = 0;
  const progress = setInterval(() => {
    const s = (now() - began) / 1000;
    log(
      `[fill] ${s.toFixed(0)} s: ${created}/${ADOPTED} Deployments written (${(created / s).toFixed(0)}/s)`,
    );
  }, 5000);
  try {
    await pool(ADOPTED, 16, async (i) => {
      const commit = {
        repo: `acme/legacy-${i % LEGACY_REPOS}`,
        targetBranch: `branch-${Math.floor(i / LEGACY_REPOS) % 100}`,
        pr: null,
        gitCommit: randomBytes(20).toString('hex'),
      };
      const name = buildName(commit);
      await kube.apps.createNamespacedDeployment({
        namespace,
        body: legacyDeployment({
          name,
          ...commit,
          // Oldest first, a minute apart: the ones MAX_DEPLOYED evicts first.
          lastScaled: new Date(Date.now() - (ADOPTED - i) * 60_000).toISOString(),
        }),
      });
      created++;
    });
  } finally {
    clearInterval(progress);
  }
  log(`[fill] ${ADOPTED} Deployments written in ${((now() - began) / 1000).toFixed(1)} s`);
}

/**
 * Waits for the Deployment controller to make a ReplicaSet for each legacy Deployment, as it had
 * long done in a namespace the Python runboat ran. Adopting while it still works through
 * thousands of them measures the sandbox's control plane, not the adoption (it took more than an
 * hour for 10,000 on this machine: README, "Scale").
 */
async function controllersCaughtUp(cluster: ClusterView): Promise<void> {
  const began = now();
  const progress = setInterval(() => {
    log(
      `[fill] ${((now() - began) / 1000).toFixed(0)} s: the Deployment controller has yet to ` +
        `observe ${cluster.unobserved()} Deployments`,
    );
  }, 10_000);
  try {
    await waitUntil('the Deployment controller', () => cluster.unobserved() === 0, 3_600_000, 500);
  } finally {
    clearInterval(progress);
  }
  log(`[fill] the Deployment controller caught up in ${((now() - began) / 1000).toFixed(1)} s`);
}

async function setUp(sandbox: Sandbox, work: string): Promise<Bench> {
  const kube = createKubeClients({
    kubeconfig: sandbox.kube.kubeconfig,
    context: sandbox.kube.context,
  });
  const namespace = 'bench-scale';
  await kube.core.createNamespace({ body: { metadata: { name: namespace } } });
  const kubefiles = join(dirname(fileURLToPath(import.meta.url)), '..', 'kubefiles', 'default');
  const reposFile = join(work, 'repos.yaml');
  await writeFile(
    reposFile,
    JSON.stringify([
      {
        repo: 'acme/churn',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            kubefiles,
            templateVars: {
              initPodAnnotations: { [RUN_FOR_ANNOTATION]: `${CHURN_INIT_SECONDS}s` },
            },
          },
        ],
      },
      {
        repo: 'acme/.*',
        branch: '.*',
        builds: [
          {
            image: 'ghcr.io/acme/odoo:16.0',
            kubefiles,
            templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: `${INIT_SECONDS}s` } },
          },
        ],
      },
    ]),
  );
  const queues = { builds: 'bench-builds', init: 'bench-init' };
  const common: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    RUNBOAT_TEMPORAL_ADDRESS: sandbox.temporal.address,
    RUNBOAT_TEMPORAL_NAMESPACE: sandbox.temporal.namespace,
    RUNBOAT_BUILDS_TASK_QUEUE: queues.builds,
    RUNBOAT_INIT_TASK_QUEUE: queues.init,
    RUNBOAT_BUILD_NAMESPACE: namespace,
    RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
    RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
    RUNBOAT_REPOS_FILE: reposFile,
    RUNBOAT_MAX_STARTED: String(MAX_STARTED),
    RUNBOAT_MAX_DEPLOYED: String(N),
    RUNBOAT_MAX_INITIALIZING: String(MAX_INITIALIZING),
  };
  const apiEnv = {
    ...common,
    RUNBOAT_API_PORT: String(await freePort()),
    RUNBOAT_WEBHOOK_SECRET: SECRET,
    RUNBOAT_ADMIN_TOKEN: ADMIN_TOKEN,
  };
  const cluster = new ClusterView(kube, namespace, MAX_STARTED);
  await cluster.start();
  await createLegacyDeployments(kube, namespace);
  await controllersCaughtUp(cluster);
  log(`starting the API, the builds worker and the init worker (from ${FROM})`);
  const api = await spawnApi(apiEnv, join(work, 'api.log'), 300_000, { from: FROM });
  const buildsWorker = await spawnWorker(
    { ...common, RUNBOAT_WORKER_ROLES: 'builds' },
    join(work, 'builds-worker.log'),
    300_000,
    { from: FROM },
  );
  const initWorker = await spawnWorker(
    { ...common, RUNBOAT_WORKER_ROLES: 'init' },
    join(work, 'init-worker.log'),
    300_000,
    { from: FROM },
  );
  const events = new BuildEvents(`${api.url}/api/v1/build-events`);
  events.start();
  const client = await connectClient({
    address: sandbox.temporal.address,
    namespace: sandbox.temporal.namespace,
  });
  return {
    sandbox,
    work,
    namespace,
    kube,
    client,
    cluster,
    events,
    api,
    buildsWorker,
    initWorker,
    apiEnv,
    workerEnv: common,
    queues,
    pending: new Set(),
  };
}

/** Waits for N deployed builds (the adopter's and the webhook's), printing the progress. */
async function fill(b: Bench) {
  const began = now();
  const cpuAtStart = await snapshot(b);
  const deployed = () => b.cluster.count('stopped') + b.cluster.count('started');
  let last = { at: began, deployed: deployed() };
  const progress = setInterval(() => {
    void snapshot(b).then((s) => {
      const d = deployed();
      const t = now();
      log(
        `[fill] ${((t - began) / 1000).toFixed(0)} s: ${d}/${N} deployed ` +
          `(${((d - last.deployed) / ((t - last.at) / 1000)).toFixed(0)}/s now, ` +
          `${(d / ((t - began) / 1000)).toFixed(0)}/s overall), ${b.cluster.count('failed')} failed; ` +
          `RSS builds worker ${mib(s, 'builds worker').toFixed(0)} MiB, api ${mib(s, 'api').toFixed(0)} MiB`,
      );
      last = { at: t, deployed: d };
    });
  }, 5000);
  try {
    await pool(WEBHOOK_FILL, 4, async (i) => {
      await push(b, CONFIGURED, `fill-${i % 50}`);
    });
    await waitUntil(`${N} deployed builds`, () => deployed() >= N, 3_600_000, 250);
    await drain(b);
  } finally {
    clearInterval(progress);
  }
  const seconds = (now() - began) / 1000;
  const cpu = cpuBetween(cpuAtStart, await snapshot(b));
  log(
    `[fill] ${N} deployed in ${seconds.toFixed(1)} s (${(N / seconds).toFixed(0)}/s); CPU % ${JSON.stringify(cpu)}`,
  );
  return {
    seconds,
    perSecond: N / seconds,
    adopted: ADOPTED,
    throughWebhook: WEBHOOK_FILL,
    cpuPercent: cpu,
  };
}

/** Starts builds until MAX_STARTED run. */
async function startToLimit(b: Bench) {
  const began = now();
  const candidates = b.cluster.newest('stopped', 'acme/legacy-', MAX_STARTED * 2).reverse();
  await pool(MAX_STARTED - b.cluster.scaledUp.size, 5, async () => {
    for (;;) {
      const name = candidates.pop();
      if (!name) throw new Error('no stopped build left to start');
      if ((await api(b, 'POST', `/api/v1/builds/${name}/start`)).status === 202) return;
    }
  });
  await waitUntil(
    `${MAX_STARTED} started`,
    () => b.cluster.count('started') >= MAX_STARTED,
    300_000,
  );
  log(`${MAX_STARTED} builds started in ${((now() - began) / 1000).toFixed(1)} s`);
}

// ---------------------------------------------------------------------------------------------
// Figures measured in each run

/**
 * Webhooks for a repo that is not configured: one at a time (latency), 10 at a time (rate). Signed
 * beforehand and sent by the cheap client: the client shares the machine with the API, and its
 * signing and `fetch` took more CPU than the API's answer.
 */
async function unconfiguredWebhooks(b: Bench) {
  const client = new BenchClient(b.api.url);
  const deliveries = (prefix: string, count: number) =>
    Array.from({ length: count }, (_, index) =>
      signedDelivery(
        'push',
        pushPayload({
          repo: UNCONFIGURED,
          branch: `${prefix}-${index}`,
          after: randomBytes(20).toString('hex'),
        }),
        SECRET,
        randomUUID(),
      ),
    );
  const send = (prepared: Prepared[]) => async (index: number) => {
    const answer = await client.send(prepared[index]!);
    if (answer.status >= 300) throw new Error(`unconfigured webhook: ${answer.status}`);
  };
  try {
    const warm = deliveries('warm', 50);
    await timed(warm.length, 1, send(warm));
    const one = deliveries('seq', 500);
    const sequential = (await timed(one.length, 1, send(one))).latencies;
    const ten = deliveries('par', 2000);
    const [{ latencies: concurrent, perSecond }, cpu] = await withCpu(b, () =>
      timed(ten.length, 10, send(ten)),
    );
    return { sequential, concurrent, perSecond, cpu };
  } finally {
    client.close();
  }
}

/** GET requests, one at a time; returns the latencies and the size of the last answer. */
async function timedGets(b: Bench, path: string, count = 200) {
  const client = new BenchClient(b.api.url);
  let body = '';
  const get = async () => {
    const answer = await client.get(path);
    if (answer.status !== 200) throw new Error(`GET ${path}: ${answer.status}`);
    body = answer.body;
  };
  try {
    await timed(10, 1, get);
    const gcBefore = await apiGc(b);
    // Timed to the answer's last byte; the client's own parsing of the JSON is not the API's.
    const { latencies } = await timed(count, 1, get);
    const gcAfter = await apiGc(b);
    const list = JSON.parse(body) as unknown;
    return {
      latencies,
      items: Array.isArray(list) ? list.length : 1,
      // The API's pauses while it answered: what a p99 of 200 reads can fall on.
      gc: {
        count: gcAfter.count - gcBefore.count,
        over10ms: gcAfter.over10ms - gcBefore.over10ms,
        ms: (gcAfter.seconds - gcBefore.seconds) * 1000,
      },
    };
  } finally {
    client.close();
  }
}

/**
 * The API's garbage collection pauses so far (scavenges and mark-compacts), from its default
 * metrics: how many, how long in all, and how many took more than 10 ms (a bucket bound).
 */
async function apiGc(b: Bench) {
  const text = await (await fetch(`${b.api.url}/metrics`)).text();
  let count = 0;
  let seconds = 0;
  let within10ms = 0;
  for (const line of text.split('\n')) {
    const match = /^nodejs_gc_duration_seconds_(count|sum|bucket)\{([^}]*)\} (\S+)$/.exec(line);
    // Pauses only: incremental marking and weak callbacks run beside the program.
    if (!match || !/kind="(major|minor)"/.test(match[2]!)) continue;
    const value = Number(match[3]);
    if (match[1] === 'count') count += value;
    else if (match[1] === 'sum') seconds += value;
    else if (match[2]!.includes('le="0.01"')) within10ms += value;
  }
  return { count, seconds, over10ms: count - within10ms };
}

/** A new client's SSE connection: time until it received every build once. */
async function sseReplay(b: Bench): Promise<{ ms: number; builds: number }> {
  const expected = ((await (await fetch(`${b.api.url}/api/v1/builds`)).json()) as unknown[]).length;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 60_000);
  const t0 = now();
  let received = 0;
  let last = t0;
  await readEvents(`${b.api.url}/api/v1/build-events`, controller.signal, (event) => {
    if (event !== 'upd') return;
    last = now();
    return ++received < expected;
  }).catch(() => undefined);
  clearTimeout(timer);
  controller.abort();
  return { ms: received >= expected ? last - t0 : NaN, builds: received };
}

/** When Temporal recorded a history event, on this process's clock (NaN if unknown). */
function eventAt(
  event: { eventTime?: { seconds?: unknown; nanos?: number | null } | null } | undefined,
) {
  const time = event?.eventTime;
  if (!time) return NaN;
  return Number(time.seconds ?? 0) * 1000 + (time.nanos ?? 0) / 1e6 - performance.timeOrigin;
}

/**
 * Webhook → the build's Deployment exists, one at a time. At rest: each webhook waits until the
 * previous build is initialized and the build it evicted is gone. Back to back: each is sent as
 * soon as the previous Deployment exists, while the previous builds initialize and evict (the
 * builds in flight then are counted).
 */
async function webhookToDeployment(b: Bench, count: number, atRest: boolean) {
  const latencies: number[] = [];
  const inFlight: number[] = [];
  // Where the time goes, from each build's history (Temporal's event times, this machine's clock).
  const parts = {
    toWorkflow: [] as number[],
    toTask: [] as number[],
    toDeployment: [] as number[],
  };
  for (let i = 0; i < count; i++) {
    if (atRest) await atRestNow(b);
    inFlight.push(
      b.cluster.count('todo') + b.cluster.count('initializing') + b.cluster.count('undeploying'),
    );
    const t0 = now();
    const name = await push(b, CONFIGURED, `${atRest ? 'rest' : 'one'}-${i % 10}`);
    if (!name) throw new Error('no build from the webhook');
    const seen = await b.cluster.exists.waitFor(name, t0, 60_000);
    latencies.push(seen - t0);
    const { events } = await b.client.workflow.getHandle(name).fetchHistory();
    const at = (index: number) => eventAt(events?.[index]);
    // Events 1 and 3: the workflow started, its first workflow task picked up by the worker.
    const started = at(0);
    const taskStarted = at(2);
    parts.toWorkflow.push(started - t0);
    parts.toTask.push(taskStarted - started);
    parts.toDeployment.push(seen - taskStarted);
  }
  return { latencies, parts, inFlight };
}

/** Waits until no build is queued, initializing or undeploying, then one more second. */
async function atRestNow(b: Bench): Promise<void> {
  await drain(b);
  await waitUntil(
    'the evicted builds to be gone',
    () => b.cluster.count('undeploying') === 0 && b.cluster.deployments.size <= N,
    120_000,
    50,
  );
  await sleep(1000);
}

/** Webhooks for a configured repo, 10 at a time (each a new build). */
async function configuredWebhooks(b: Bench, count = 100): Promise<number[]> {
  const client = new BenchClient(b.api.url);
  const prepared = Array.from({ length: count }, (_, i) =>
    signedDelivery(
      'push',
      pushPayload({
        repo: CONFIGURED,
        branch: `par-${i % 20}`,
        after: randomBytes(20).toString('hex'),
      }),
      SECRET,
      randomUUID(),
    ),
  );
  try {
    const { latencies } = await timed(count, 10, async (i) => {
      const answer = await client.send(prepared[i]!);
      if (answer.status >= 300) throw new Error(`webhook: ${answer.status} ${answer.body}`);
      const build = (JSON.parse(answer.body) as { build?: string }).build;
      if (build) b.pending.add(build);
    });
    return latencies;
  } finally {
    client.close();
  }
}

/** The builds worker's metrics, as Prometheus text. */
async function buildsWorkerMetrics(b: Bench): Promise<string> {
  const url = await workerMetricsUrl(join(b.work, 'builds-worker.log'));
  return (await fetch(url)).text();
}

/** The builds worker's sticky cache misses so far (a workflow task for a workflow it evicted). */
async function stickyCacheMisses(b: Bench): Promise<number> {
  const text = await buildsWorkerMetrics(b);
  return [...text.matchAll(/^temporal_sticky_cache_miss\{[^}]*\} (\d+)/gm)].reduce(
    (sum, match) => sum + Number(match[1]),
    0,
  );
}

/**
 * The builds worker's main thread since the previous call (prom-client samples its event loop
 * delay and starts afresh at each scrape): how late its callbacks ran, p99 and max, in ms.
 */
async function eventLoopDelay(b: Bench): Promise<{ p99: number; max: number }> {
  const text = await buildsWorkerMetrics(b);
  const value = (name: string) =>
    Number(new RegExp(`^${name} ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? NaN) * 1000;
  return {
    p99: value('nodejs_eventloop_lag_p99_seconds'),
    max: value('nodejs_eventloop_lag_max_seconds'),
  };
}

/**
 * Starts of stopped builds with MAX_STARTED running, one at a time: each crosses the limit, and
 * the next waits until the fleet has restored it.
 */
async function starts(b: Bench) {
  const toScaled: number[] = [];
  const toStarted: number[] = [];
  const readyToStarted: number[] = [];
  const cached: number[] = [];
  const replayed: number[] = [];
  const atRest: number[] = [];
  const atOnce: number[] = [];
  const restoresBefore = b.cluster.restores.length;
  const candidates = b.cluster.newest('stopped', '', STARTS * 3).reverse();
  for (let i = 0; i < STARTS; i++) {
    await waitUntil(
      'the started limit restored',
      () => b.cluster.scaledUp.size <= MAX_STARTED,
      60_000,
      20,
    );
    const name = candidates.pop();
    if (!name) break;
    // Every other start waits 2 s more: at rest, once the previous start's eviction has settled
    // in the fleet and in the build it stopped; the others follow at once.
    const rest = i % 2 === 0;
    if (rest) await sleep(2000);
    const missesBefore = await stickyCacheMisses(b);
    const t0 = now();
    const answer = await api(b, 'POST', `/api/v1/builds/${name}/start`);
    if (answer.status !== 202) {
      log(`start ${name}: ${answer.status} ${answer.body}`);
      continue;
    }
    const scaledAt = await b.cluster.scaled.waitFor(name, t0, 60_000);
    const startedAt = await b.cluster.status.waitFor(`${name} started`, t0, 60_000);
    const readyAt = await b.cluster.podReady.waitFor(name, t0, 10_000);
    // Was the build's workflow in the worker's cache? Its update's task goes to the worker's
    // sticky queue either way; a worker that evicted it fetches its history and replays it, and
    // counts a sticky cache miss (Temporal's core metric, on the worker's /metrics).
    const missed = (await stickyCacheMisses(b)) > missesBefore;
    (missed ? replayed : cached).push(scaledAt - t0);
    (rest ? atRest : atOnce).push(scaledAt - t0);
    toScaled.push(scaledAt - t0);
    toStarted.push(startedAt - t0);
    readyToStarted.push(startedAt - readyAt);
  }
  await waitUntil(
    'the started limit restored',
    () => b.cluster.scaledUp.size <= MAX_STARTED,
    60_000,
    20,
  );
  return {
    toScaled,
    toStarted,
    readyToStarted,
    cached,
    replayed,
    atRest,
    atOnce,
    restores: b.cluster.restores.slice(restoresBefore),
  };
}

/** 50 builds at once: init Job Complete (cluster) → `stopped` in the API's events. */
async function burst(b: Bench, count = 50) {
  const t0 = now();
  const names: string[] = [];
  await pool(count, 10, async (i) => {
    const name = await push(b, CONFIGURED, `burst-${i}`);
    if (name) names.push(name);
  });
  const latencies: number[] = [];
  // Where the time goes: the workflow writing `stopped` on the Deployment, then the API seeing it.
  const toCluster: number[] = [];
  const clusterToApi: number[] = [];
  for (const name of names) {
    const completeAt = await b.cluster.jobComplete.waitFor(name, t0, 600_000);
    const labelledAt = await b.cluster.status.waitFor(`${name} stopped`, t0, 600_000);
    const visibleAt = await b.events.status.waitFor(`${name} stopped`, t0, 600_000);
    latencies.push(visibleAt - completeAt);
    toCluster.push(labelledAt - completeAt);
    clusterToApi.push(visibleAt - labelledAt);
  }
  return { latencies, toCluster, clusterToApi };
}

/** 40 builds queued at once with 4 init slots: makespan against 10 waves of the Job time. */
async function initUtilisation(b: Bench) {
  const slots = b.client.workflow.getHandle(initSlotsWorkflowId(b.queues.init));
  await slots.signal(initSlotsLimitSignal, 4);
  await sleep(1000);
  b.cluster.resetPeak();
  const t0 = now();
  const names: string[] = [];
  try {
    await pool(40, 10, async (i) => {
      const name = await push(b, CONFIGURED, `util-${i}`);
      if (name) names.push(name);
    });
    let last = t0;
    for (const name of names) {
      last = Math.max(last, await b.cluster.status.waitFor(`${name} stopped`, t0, 600_000));
    }
    const jobMs = median(
      names.map((name) => b.cluster.jobMs.get(name) ?? NaN).filter(Number.isFinite),
    );
    const makespanMs = last - t0;
    // A slot handed over: the i-th init Job to complete → the (i+4)-th to be created.
    const completed = names
      .map((name) => b.cluster.jobComplete.firstSince(name, t0) ?? NaN)
      .sort((x, y) => x - y);
    const created = names
      .map((name) => b.cluster.jobCreatedAt.get(name) ?? NaN)
      .sort((x, y) => x - y);
    const handoffs = created.slice(4).map((at, i) => at - (completed[i] ?? NaN));
    // Where a makespan above 10 Job times goes: the start, while the 40 builds deploy at once,
    // and the waves after it (from the 9th Job's creation to the last build stopped).
    const stoppedAt = names
      .map((name) => b.cluster.status.firstSince(`${name} stopped`, t0) ?? NaN)
      .sort((x, y) => x - y);
    const laterWaves = ((stoppedAt.at(-1) ?? NaN) - (created[8] ?? NaN)) / (8 * jobMs);
    return {
      makespanMs,
      jobMs,
      handoffMs: median(handoffs),
      slowestHandoffMs: Math.max(...handoffs),
      firstJobsMs: [(created[0] ?? NaN) - t0, (created[3] ?? NaN) - t0],
      laterWaves,
      ratio: makespanMs / (10 * jobMs),
      peak: b.cluster.peakInit,
      builds: names.length,
    };
  } finally {
    await slots.signal(initSlotsLimitSignal, MAX_INITIALIZING);
  }
}

async function measureRun(b: Bench, run: number) {
  log(`run ${run}: webhooks for a repo that is not configured`);
  const unconfigured = await unconfiguredWebhooks(b);
  log(`run ${run}: API queries at ${b.cluster.live} builds`);
  const filtered = await timedGets(b, '/api/v1/builds?repo=acme/legacy-0');
  const branch = await timedGets(b, '/api/v1/builds?repo=acme/legacy-0&target_branch=branch-7');
  const status = await timedGets(b, '/api/v1/status');
  const sse = await sseReplay(b);
  log(`run ${run}: webhook → Deployment, one at a time; configured repo, 10 at a time`);
  const atRest = await webhookToDeployment(b, 10, true);
  const [backToBack, backToBackCpu] = await withCpu(b, () => webhookToDeployment(b, 20, false));
  const toDeployment = atRest.latencies;
  const [configured, configuredCpu] = await withCpu(b, () => configuredWebhooks(b));
  await drain(b);
  log(`run ${run}: ${STARTS} starts at ${MAX_STARTED} started`);
  const [started, startsCpu] = await withCpu(b, () => starts(b));
  await drain(b);
  log(`run ${run}: a burst of 50 builds`);
  const [burstMs, burstCpu] = await withCpu(b, () => burst(b));
  await drain(b);
  log(`run ${run}: 40 builds, 4 init slots`);
  const [utilisation, utilisationCpu] = await withCpu(b, () => initUtilisation(b));
  await drain(b);
  log(`run ${run}: the floor (empty workflow, a ConfigMap watched)`);
  const floors = await measureFloors({
    client: b.client,
    temporalAddress: b.sandbox.temporal.address,
    temporalNamespace: b.sandbox.temporal.namespace,
    kube: b.kube,
    namespace: b.namespace,
    samples: 20,
  });
  const result = {
    floors,
    unconfigured,
    filtered,
    branch,
    status,
    sse,
    toDeployment,
    toDeploymentParts: atRest.parts,
    backToBack,
    configured,
    started,
    burstMs,
    utilisation,
    cpu: {
      backToBack: backToBackCpu,
      configured: configuredCpu,
      starts: startsCpu,
      burst: burstCpu,
      utilisation: utilisationCpu,
    },
  };
  log(
    `run ${run}: unconfigured p50 ${summary(unconfigured.sequential).median.toFixed(1)} ms, ` +
      `${unconfigured.perSecond.toFixed(0)}/s; list of ${filtered.items} p99 ${summary(filtered.latencies).p99.toFixed(1)} ms; ` +
      `SSE replay ${sse.ms.toFixed(0)} ms; webhook → Deployment p50 ${summary(toDeployment).median.toFixed(0)} ms; ` +
      `start → scaled p50 ${summary(started.toScaled).median.toFixed(0)} ms; burst p99 ${summary(burstMs.latencies).p99.toFixed(0)} ms; ` +
      `init makespan ${(utilisation.makespanMs / 1000).toFixed(1)} s (×${utilisation.ratio.toFixed(2)}, peak ${utilisation.peak})`,
  );
  return result;
}
type Run = Awaited<ReturnType<typeof measureRun>>;

// ---------------------------------------------------------------------------------------------
// Once: churn, idle, restarts

/** New pushes, starts and stops for a while; samples the counts every 500 ms. */
async function churn(b: Bench) {
  const until = now() + CHURN_SECONDS * 1000;
  const restoresBefore = b.cluster.restores.length;
  b.cluster.resetPeak();
  const samples = {
    started: [] as number[],
    initializing: [] as number[],
    todo: [] as number[],
    deployed: [] as number[],
  };
  const counts = { pushes: 0, starts: 0, stops: 0, refused: 0 };
  const sampler = setInterval(() => {
    samples.started.push(b.cluster.scaledUp.size);
    samples.initializing.push(b.cluster.activeInit.size);
    samples.todo.push(b.cluster.count('todo'));
    samples.deployed.push(b.cluster.live);
  }, 500);
  const pick = (names: string[]) => names[Math.floor(Math.random() * names.length)];
  const before = await snapshot(b);
  const missesBefore = await stickyCacheMisses(b);
  await eventLoopDelay(b);
  let hop: number[] | undefined;
  try {
    const work = Promise.all([
      (async () => {
        // Enough in the queue that all 20 init slots stay busy.
        while (now() < until) {
          settle(b);
          const want = Math.min(10, MAX_INITIALIZING + 10 - b.pending.size);
          await pool(Math.max(0, want), 5, async (i) => {
            await push(b, CHURN, `churn-${(counts.pushes + i) % 40}`);
          });
          counts.pushes += Math.max(0, want);
          await sleep(250);
        }
      })(),
      (async () => {
        while (now() < until) {
          const name = pick(b.cluster.newest('stopped', 'acme/legacy-', 1000));
          if (name) {
            const answer = await api(b, 'POST', `/api/v1/builds/${name}/start`);
            if (answer.status === 202) counts.starts++;
            else counts.refused++;
          }
          await sleep(1000);
        }
      })(),
      (async () => {
        while (now() < until) {
          await sleep(3000);
          const name = pick(b.cluster.named('started'));
          if (name) {
            const answer = await api(b, 'POST', `/api/v1/builds/${name}/stop`);
            if (answer.status === 202) counts.stops++;
            else counts.refused++;
          }
        }
      })(),
    ]);
    // One hop through Temporal, timed while the churn loads it: a limit restored takes two.
    const temporal = {
      client: b.client,
      temporalAddress: b.sandbox.temporal.address,
      temporalNamespace: b.sandbox.temporal.namespace,
    };
    [, hop] = await Promise.all([work, updateFloorWhile(temporal, work)]);
  } finally {
    clearInterval(sampler);
  }
  const cpu = cpuBetween(before, await snapshot(b));
  const result = {
    seconds: CHURN_SECONDS,
    ...counts,
    started: summary(samples.started),
    initializing: summary(samples.initializing),
    todo: summary(samples.todo),
    deployed: summary(samples.deployed),
    peakInitJobs: b.cluster.peakInit,
    restores: b.cluster.restores.slice(restoresBefore),
    hop: summary(hop ?? []),
    // The delay first: each scrape starts its sampling afresh.
    eventLoopDelay: await eventLoopDelay(b),
    cacheMisses: (await stickyCacheMisses(b)) - missesBefore,
    cpuPercent: cpu,
  };
  log(
    `[churn] ${counts.pushes} pushes, ${counts.starts} starts, ${counts.stops} stops in ${CHURN_SECONDS} s; ` +
      `started median ${result.started.median} (max ${result.started.max}), initializing median ` +
      `${result.initializing.median} (max ${result.peakInitJobs}), deployed ${result.deployed.min}–${result.deployed.max}`,
  );
  await drain(b);
  return result;
}

/** RSS and CPU of every process over `--idle-seconds` with nothing happening. */
async function idle(b: Bench) {
  await drain(b);
  await sleep(5000);
  const pids = await processes(b);
  const threadsOf = () =>
    Promise.all(
      OURS.map((name) => sampleThreads(pids[name] ?? 0).catch((): Record<string, number> => ({}))),
    );
  const threadsBefore = await threadsOf();
  const before = await snapshot(b);
  await sleep(IDLE_SECONDS * 1000);
  const after = await snapshot(b);
  const threadsAfter = await threadsOf();
  const cpu = cpuBetween(before, after);
  const ours = OURS.reduce((sum, name) => sum + (cpu[name] ?? 0), 0);
  const rss = Object.fromEntries(
    Object.entries(after.processes).map(([k, v]) => [k, Math.round(v.rssMiB)]),
  );
  // Which threads of our processes were busy (percent of one core, 0.1 % and more).
  const threads = Object.fromEntries(
    OURS.map((name, i) => {
      const start: Record<string, number> = threadsBefore[i] ?? {};
      const busy = Object.entries(threadsAfter[i] ?? {})
        .map(([thread, seconds]) => {
          const percent = ((seconds - (start[thread] ?? 0)) / IDLE_SECONDS) * 100;
          return [thread, Math.round(percent * 10) / 10] as const;
        })
        .filter(([, percent]) => percent >= 0.1)
        .sort((x, y) => y[1] - x[1]);
      return [name, Object.fromEntries(busy)];
    }),
  );
  log(
    `[idle] CPU % of one core ${JSON.stringify(cpu)} (ours ${ours.toFixed(1)} %); by thread ${JSON.stringify(threads)}; RSS MiB ${JSON.stringify(rss)}`,
  );
  return { seconds: IDLE_SECONDS, cpuPercent: cpu, oursCpuPercent: ours, threads, rssMiB: rss };
}

/** The API stopped and started: first answer, then the full list. */
async function apiRestart(b: Bench) {
  const expected = ((await (await fetch(`${b.api.url}/api/v1/builds`)).json()) as unknown[]).length;
  await b.api.stop();
  const t0 = now();
  const spawning = spawnApi(b.apiEnv, join(b.work, 'api.log'), 300_000, { from: FROM });
  let firstAnswer = NaN;
  let fullList = NaN;
  while (Number.isNaN(fullList)) {
    try {
      const response = await fetch(`${b.api.url}/api/v1/builds`);
      if (Number.isNaN(firstAnswer)) firstAnswer = now() - t0;
      const list = (await response.json()) as unknown;
      if (response.status === 200 && Array.isArray(list) && list.length >= expected)
        fullList = now() - t0;
    } catch {
      // Not listening yet.
    }
    if (Number.isNaN(fullList)) await sleep(20);
    if (now() - t0 > 300_000) throw new Error('the API did not come back');
  }
  b.api = await spawning;
  log(
    `[restart] API: first answer ${firstAnswer.toFixed(0)} ms, full list of ${expected} after ${fullList.toFixed(0)} ms`,
  );
  return { firstAnswerMs: firstAnswer, fullListMs: fullList, builds: expected };
}

/** The builds worker stopped and started; a webhook sent as it starts, until `stopped`. */
async function workerRestart(b: Bench) {
  const stopping = now();
  await b.buildsWorker.stop();
  const stopMs = now() - stopping;
  const t0 = now();
  const spawning = spawnWorker(
    { ...b.workerEnv, RUNBOAT_WORKER_ROLES: 'builds' },
    join(b.work, 'builds-worker.log'),
    300_000,
    { from: FROM },
  );
  const name = await push(b, CONFIGURED, 'after-restart');
  if (!name) throw new Error('no build from the webhook');
  b.buildsWorker = await spawning;
  const runningMs = now() - t0;
  const stoppedMs = (await b.cluster.status.waitFor(`${name} stopped`, t0, 600_000)) - t0;
  const jobMs = b.cluster.jobMs.get(name) ?? NaN;
  log(
    `[restart] builds worker: stopped in ${stopMs.toFixed(0)} ms; running after ${runningMs.toFixed(0)} ms; ` +
      `the new build stopped after ${stoppedMs.toFixed(0)} ms (its init Job ${jobMs.toFixed(0)} ms)`,
  );
  await drain(b);
  return { oldWorkerStopMs: stopMs, workerRunningMs: runningMs, toStoppedMs: stoppedMs, jobMs };
}

/** Temporal restarted with its database deleted: until every build has a workflow again. */
async function temporalWiped(b: Bench) {
  const expected = b.cluster.live;
  const query = `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '${b.queues.builds}'`;
  const before = await snapshot(b);
  const t0 = now();
  await b.client.connection.close();
  await restartTemporal(b.sandbox, { wipe: true });
  const restartedMs = now() - t0;
  b.client = await connectClient({
    address: b.sandbox.temporal.address,
    namespace: b.sandbox.temporal.namespace,
  });
  // Started is not adopted: a build is taken over once its workflow ran its first task, which
  // sets its search attributes (workflows/build-workflow.ts, adopt).
  const count = (q: string) =>
    b.client.workflowService
      .countWorkflowExecutions({ namespace: b.sandbox.temporal.namespace, query: q })
      .then((r) => r.count?.toNumber() ?? 0)
      .catch(() => 0);
  let running: number;
  let taken = 0;
  let runningMs: number | undefined;
  let lastLine = now();
  while (taken < expected) {
    running = await count(query);
    taken = await count(`${query} AND ${buildSearchAttributeKeys.status.name} IS NOT NULL`);
    if (running >= expected) runningMs ??= now() - t0;
    if (now() - lastLine > 5000) {
      lastLine = now();
      log(
        `[wipe] ${((now() - t0) / 1000).toFixed(0)} s: ${running}/${expected} workflows started, ` +
          `${taken} of them took the build over`,
      );
    }
    if (now() - t0 > 3_600_000) throw new Error('builds not adopted back within an hour');
    if (taken < expected) await sleep(1000);
  }
  const seconds = (now() - t0) / 1000;
  const cpu = cpuBetween(before, await snapshot(b));
  const exists = async (id: string) =>
    b.client.workflow
      .getHandle(id)
      .describe()
      .then((d) => d.status.name)
      .catch(() => 'not found');
  const fleet = await exists(fleetWorkflowId(b.queues.builds));
  const initSlots = await exists(initSlotsWorkflowId(b.queues.init));
  // Does the started limit still hold once Temporal forgot the fleet? One start beyond it.
  await drain(b);
  let restoredAfterWipeMs: number | null = null;
  // The churn and the restarts may have left fewer than MAX_STARTED builds started: start some
  // until the limit is reached, so that the start below crosses it.
  const short = Math.max(0, MAX_STARTED - b.cluster.scaledUp.size);
  for (const name of b.cluster.newest('stopped', '', short)) {
    const t = now();
    await api(b, 'POST', `/api/v1/builds/${name}/start`);
    await b.cluster.scaled.waitFor(name, t, 60_000).catch(() => undefined);
  }
  const candidate = b.cluster.newest('stopped', '', 1)[0];
  const limitTried = candidate !== undefined && b.cluster.scaledUp.size >= MAX_STARTED;
  if (!limitTried) {
    log(`[wipe] no start beyond the limit: ${b.cluster.scaledUp.size} scaled up, no stopped build`);
  }
  if (limitTried) {
    const t = now();
    await api(b, 'POST', `/api/v1/builds/${candidate}/start`);
    await b.cluster.scaled.waitFor(candidate, t, 60_000);
    await waitUntil(
      'the limit restored after the wipe',
      () => b.cluster.scaledUp.size <= MAX_STARTED,
      30_000,
    ).then(
      () => (restoredAfterWipeMs = now() - t),
      () => undefined,
    );
    if (restoredAfterWipeMs === null) {
      // What the fleet did meanwhile, for whoever looks into it.
      const file = join(b.work, 'fleet-after-wipe.json');
      const history = await b.client.workflow
        .getHandle(fleetWorkflowId(b.queues.builds))
        .fetchHistory()
        .catch((error: unknown) => ({ error: String(error) }));
      await writeFile(file, JSON.stringify({ started: candidate, history }, null, 1));
      log(
        `[wipe] the limit was not restored; ${b.cluster.scaledUp.size} scaled up; the fleet's history in ${file}`,
      );
    }
  }
  log(
    `[wipe] ${expected} builds adopted back ${seconds.toFixed(1)} s after the wipe; fleet ${fleet}, init slots ${initSlots}`,
  );
  return {
    builds: expected,
    seconds,
    workflowsStartedSeconds: (runningMs ?? now() - t0) / 1000,
    temporalRestartMs: restartedMs,
    fleetWorkflow: fleet,
    initSlotsWorkflow: initSlots,
    limitTried,
    restoredAfterWipeMs,
    cpuPercent: cpu,
  };
}

// ---------------------------------------------------------------------------------------------
// The report

interface Figure {
  figure: string;
  target: string;
  measured: string;
  met: boolean;
  detail?: unknown;
}

/** A figure measured in each run: the median over runs of each run's median and p99. */
function acrossRuns(perRun: number[][]) {
  const each = perRun.map((values) => summary(values));
  return {
    n: each.reduce((sum, s) => sum + s.n, 0),
    median: median(each.map((s) => s.median)),
    p99: median(each.map((s) => s.p99)),
    perRun: each,
  };
}

const ms = (value: number) => (value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(1)} ms`);
const dist = (s: { n: number; median: number; p99: number }) =>
  `n=${s.n}, median ${ms(s.median)}, p99 ${ms(s.p99)}`;

/** Each floor over the runs (median of the runs' medians and p99s). */
function floorsAcrossRuns(runs: Run[]) {
  const keys = Object.keys(runs[0]?.floors ?? {}) as (keyof Floors)[];
  return Object.fromEntries(keys.map((k) => [k, acrossRuns(runs.map((r) => r.floors[k]))])) as {
    [K in keyof Floors]: ReturnType<typeof acrossRuns>;
  };
}

/** `node 1.2 %, tokio-runtime-w 0.8 %`: a process's busy threads. */
function threadList(threads: Record<string, number> | undefined): string {
  const entries = Object.entries(threads ?? {});
  return entries.length === 0
    ? 'none above 0.1 %'
    : entries.map(([name, percent]) => `${name} ${percent} %`).join(', ');
}

const floorNames: Record<keyof Floors, string> = {
  startToActivity: 'Temporal: a workflow started by a client → its first activity runs',
  updateToLocalActivity: 'Temporal: an update sent → the local activity its handler runs',
  updateRoundTrip: 'Temporal: an update sent → its answer',
  activityEndToLocalActivity: 'Temporal: an activity returns → the local activity after it runs',
  kubeWriteToWatch: 'Kubernetes: a ConfigMap created → seen by a watch',
  startAnswered10: 'Temporal: a workflow start answered, 10 at a time',
  emptyHttpAnswer: 'HTTP: a GET answered by a Node server doing nothing else, one at a time',
};

function figures(
  runs: Run[],
  once: Record<string, unknown> & {
    idle: Awaited<ReturnType<typeof idle>>;
    churn: Awaited<ReturnType<typeof churn>>;
    apiRestart: Awaited<ReturnType<typeof apiRestart>>;
    workerRestart: Awaited<ReturnType<typeof workerRestart>>;
    wipe: Awaited<ReturnType<typeof temporalWiped>>;
  },
): Figure[] {
  const over = (pick: (run: Run) => number[]) => acrossRuns(runs.map(pick));
  const runsOf = (pick: (run: Run) => number) => median(runs.map(pick));
  // Was the machine the limit? Its CPU over the phase, median of the runs.
  const cpuOf = (pick: (run: Run) => PhaseCpu) =>
    `; the machine's CPU over the phase ${runsOf((r) => pick(r).machine)} % of its ${cpus().length * 100} % (our three processes ${runsOf((r) => pick(r).ours)} %, the benchmark's own ${runsOf((r) => pick(r).client)} %)`;
  const at = N >= 10_000 ? '' : ` (at ${N}, not 10,000)`;
  const util = {
    makespanMs: runsOf((r) => r.utilisation.makespanMs),
    jobMs: runsOf((r) => r.utilisation.jobMs),
    ratio: runsOf((r) => r.utilisation.ratio),
    handoffMs: runsOf((r) => r.utilisation.handoffMs),
    slowestHandoffMs: runsOf((r) => r.utilisation.slowestHandoffMs),
    firstJobMs: runsOf((r) => r.utilisation.firstJobsMs[0] ?? NaN),
    fourthJobMs: runsOf((r) => r.utilisation.firstJobsMs[1] ?? NaN),
    laterWaves: runsOf((r) => r.utilisation.laterWaves),
    peak: Math.max(...runs.map((r) => r.utilisation.peak)),
  };
  const burstMs = over((r) => r.burstMs.latencies);
  const burstToCluster = over((r) => r.burstMs.toCluster);
  const burstClusterToApi = over((r) => r.burstMs.clusterToApi);
  const toDeployment = over((r) => r.toDeployment);
  const backToBack = over((r) => r.backToBack.latencies);
  const backToBackTask = over((r) => r.backToBack.parts.toTask);
  const backToBackWorker = over((r) => r.backToBack.parts.toDeployment);
  const backToBackInFlight = runsOf((r) => median(r.backToBack.inFlight));
  const backToBackCpu = runsOf((r) => r.cpu.backToBack.machine);
  const toDeploymentParts = {
    toWorkflow: over((r) => r.toDeploymentParts.toWorkflow),
    toTask: over((r) => r.toDeploymentParts.toTask),
    toDeployment: over((r) => r.toDeploymentParts.toDeployment),
  };
  const toScaled = over((r) => r.started.toScaled);
  // Pooled over the runs: either kind may be missing from a run.
  const pooled = (pick: (run: Run) => number[]) => {
    const values = runs.flatMap(pick);
    return values.length > 0 ? dist(summary(values)) : 'none';
  };
  const startsAtRest = over((r) => r.started.atRest);
  const startsAtOnce = over((r) => r.started.atOnce);
  const startsCached = pooled((r) => r.started.cached);
  const startsReplayed = pooled((r) => r.started.replayed);
  const readyToStarted = over((r) => r.started.readyToStarted);
  const toStarted = over((r) => r.started.toStarted);
  const unconfigured = over((r) => r.unconfigured.sequential);
  const unconfiguredConcurrent = over((r) => r.unconfigured.concurrent);
  const rate = runsOf((r) => r.unconfigured.perSecond);
  const configured = over((r) => r.configured);
  const filtered = over((r) => r.filtered.latencies);
  const branch = over((r) => r.branch.latencies);
  const status = over((r) => r.status.latencies);
  const sse = runsOf((r) => r.sse.ms);
  const floor = floorsAcrossRuns(runs);
  const emptyFloor = `; floor: ${dist(floor.emptyHttpAnswer)} (an empty answer of a Node server on this machine, same client)`;
  const gcOf = (pick: (run: Run) => { gc: { count: number; over10ms: number; ms: number } }) =>
    `; the API's garbage collection pauses over the reads (median of the runs): ${runsOf((r) => pick(r).gc.count)}, ` +
    `${runsOf((r) => pick(r).gc.over10ms)} of them over 10 ms, ${ms(runsOf((r) => pick(r).gc.ms))} in all`;
  // What a transition cannot go below on this server and machine: its Temporal round trip and
  // one Kubernetes write seen by a watch (the benchmark sees the cluster through one).
  const floorOf = (temporal: number, what: string) =>
    `; floor ${ms(temporal + floor.kubeWriteToWatch.median)} (${what} ${ms(temporal)} + a Kubernetes write seen by a watch ${ms(floor.kubeWriteToWatch.median)})`;
  const { rssMiB, oursCpuPercent } = once.idle;
  const workerMiB = (rssMiB['builds worker'] ?? NaN) + (rssMiB['init worker'] ?? NaN);
  const apiMiB = rssMiB.api ?? NaN;
  const restores = [...runs.flatMap((r) => r.started.restores), ...once.churn.restores];
  const restore = summary(restores);
  const memory: Figure =
    N <= 100
      ? {
          figure: `memory (RSS, steady) at ${N} builds`,
          target: 'worker + API ≤ 250 MiB at 100 builds',
          measured: `workers ${workerMiB.toFixed(0)} MiB (builds ${rssMiB['builds worker']}, init ${rssMiB['init worker']}) + API ${apiMiB.toFixed(0)} MiB`,
          met: workerMiB + apiMiB <= 250,
        }
      : {
          figure: `memory (RSS, steady) at ${N} builds`,
          target: 'worker ≤ 400 MiB and API ≤ 200 MiB at 10,000 builds',
          measured: `workers ${workerMiB.toFixed(0)} MiB (builds ${rssMiB['builds worker']}, init ${rssMiB['init worker']}), API ${apiMiB.toFixed(0)} MiB${at}`,
          met: workerMiB <= 400 && apiMiB <= 200,
        };
  return [
    {
      figure: 'init slot utilisation: 40 builds queued at once, 4 slots, init Jobs of 3 s',
      target: 'makespan ≤ 1.10 × (10 waves × measured Job time); never more than 4 init Jobs',
      measured: `makespan ${(util.makespanMs / 1000).toFixed(1)} s = ${util.ratio.toFixed(2)} × (10 × ${(util.jobMs / 1000).toFixed(2)} s); peak ${util.peak} init Jobs on the cluster; a slot handed over (a Job Complete → the next Job created) in ${ms(util.handoffMs)} (slowest ${ms(util.slowestHandoffMs)}) (${runs.length} runs); the first init Job created ${(util.firstJobMs / 1000).toFixed(1)} s and the 4th ${(util.fourthJobMs / 1000).toFixed(1)} s after the first webhook, while the 40 builds deploy at once; waves 3–10 (the 9th Job created → the last build \`stopped\`) took ${util.laterWaves.toFixed(2)} × (8 × the Job time)${cpuOf((r) => r.cpu.utilisation)}`,
      met: util.ratio <= 1.1 && util.peak <= 4,
      detail: util,
    },
    {
      figure: 'init Job complete → `stopped` visible in the API (50-build burst)',
      target: 'p50 ≤ 50 ms, p99 ≤ 150 ms',
      measured:
        `${dist(burstMs)}; of which Job Complete → Deployment labelled \`stopped\`: ${dist(burstToCluster)}, then → the API's event: ${dist(burstClusterToApi)}` +
        floorOf(
          floor.kubeWriteToWatch.median,
          'the Job seen by the activity’s watch, then its write of the status: a Kubernetes write seen by a watch',
        ) +
        cpuOf((r) => r.cpu.burst),
      met: burstMs.median <= 50 && burstMs.p99 <= 150,
      detail: { burstMs, burstToCluster, burstClusterToApi },
    },
    {
      figure: 'webhook sent → build Deployment exists, one at a time',
      target: 'p50 ≤ 250 ms',
      measured:
        'at rest (each after the previous build is initialized and its eviction done): ' +
        dist(toDeployment) +
        `; of which the webhook → its workflow started (the API, Temporal's start): median ${ms(toDeploymentParts.toWorkflow.median)}, ` +
        `→ its first workflow task picked up by the worker (Temporal): median ${ms(toDeploymentParts.toTask.median)}, ` +
        `→ the Deployment seen (the worker: the workflow task, the kubefiles rendered, dry run and apply, the watch): median ${ms(toDeploymentParts.toDeployment.median)}` +
        floorOf(floor.startToActivity.median, 'a workflow started → its first activity') +
        `. Back to back (each as soon as the previous Deployment exists): ${dist(backToBack)}, ` +
        `with a median of ${backToBackInFlight} builds queued, initializing or undeploying when one is sent ` +
        `and the machine's CPU at ${backToBackCpu} % of its ${cpus().length * 100} %; ` +
        `of which → the first workflow task picked up: median ${ms(backToBackTask.median)}, → the Deployment seen: median ${ms(backToBackWorker.median)}`,
      met: toDeployment.median <= 250,
      detail: {
        toDeployment,
        toDeploymentParts,
        backToBack,
        backToBackTask,
        backToBackWorker,
        backToBackInFlight,
        backToBackCpu,
      },
    },
    {
      figure: `start request → Deployment scaled (${MAX_STARTED} started, each start crossing the limit)`,
      target: 'p50 ≤ 30 ms',
      measured:
        `at rest (2 s after the previous start's eviction): ${dist(startsAtRest)}` +
        floorOf(floor.updateToLocalActivity.median, 'an update → the local activity it runs') +
        `; right after the previous start: ${dist(startsAtOnce)}; all: ${dist(toScaled)}, ` +
        `of which the build's workflow in the worker's cache: ${startsCached}, out of it (its history fetched and replayed first): ${startsReplayed}` +
        cpuOf((r) => r.cpu.starts),
      met: startsAtRest.median <= 30,
      detail: { toScaled, startsAtRest, startsAtOnce },
    },
    {
      figure: 'pod Ready → `started`',
      target: 'p50 ≤ 50 ms',
      measured:
        `${dist(readyToStarted)}; start request → \`started\`: ${dist(toStarted)}` +
        floorOf(
          floor.kubeWriteToWatch.median,
          'the pod seen by the activity’s watch, then its write of the status: a Kubernetes write seen by a watch',
        ),
      met: readyToStarted.median <= 50,
      detail: { readyToStarted, toStarted },
    },
    {
      figure: 'webhook for a repo that is not configured',
      target: 'p50 ≤ 2 ms, ≥ 2,500 deliveries/s at 10 concurrent',
      measured: `one at a time: ${dist(unconfigured)}; 10 concurrent: ${rate.toFixed(0)}/s (${dist(unconfiguredConcurrent)})${cpuOf((r) => r.unconfigured.cpu)}`,
      met: unconfigured.median <= 2 && rate >= 2500,
      detail: {
        unconfigured,
        unconfiguredConcurrent,
        perSecond: runs.map((r) => r.unconfigured.perSecond),
      },
    },
    {
      figure: 'webhook for a configured repo, 10 concurrent',
      target: 'p99 ≤ 150 ms',
      measured: `${dist(configured)}; floor: ${dist(floor.startAnswered10)} (Temporal: a workflow start answered, 10 at a time)${cpuOf((r) => r.cpu.configured)}`,
      met: configured.p99 <= 150,
      detail: configured,
    },
    {
      figure: `GET /api/v1/builds filtered to ${runs[0]?.filtered.items ?? 0} builds`,
      target: 'p99 ≤ 20 ms at 10,000 builds',
      measured: dist(filtered) + at + emptyFloor + gcOf((r) => r.filtered),
      met: filtered.p99 <= 20,
      detail: filtered,
    },
    {
      figure: `GET /api/v1/builds of one branch (${runs[0]?.branch.items ?? 0} builds)`,
      target: 'p99 ≤ 2 ms at 10,000 builds',
      measured: dist(branch) + at + emptyFloor + gcOf((r) => r.branch),
      met: branch.p99 <= 2,
      detail: branch,
    },
    {
      figure: 'GET /api/v1/status',
      target: 'p99 ≤ 2 ms at 10,000 builds',
      measured: dist(status) + at + emptyFloor + gcOf((r) => r.status),
      met: status.p99 <= 2,
      detail: status,
    },
    {
      figure: `SSE initial replay to a new client (${runs[0]?.sse.builds ?? 0} builds)`,
      target: '≤ 1 s at 10,000 builds',
      measured: `${ms(sse)} (median of ${runs.length})${at}`,
      met: sse <= 1000,
      detail: runs.map((r) => r.sse),
    },
    memory,
    {
      figure: `idle CPU at ${N} builds, ${IDLE_SECONDS} s with nothing happening`,
      target: '≤ 5 % of one core, all our processes together, at 10,000 builds',
      measured: `${oursCpuPercent.toFixed(1)} % (builds worker ${once.idle.cpuPercent['builds worker']} %, init worker ${once.idle.cpuPercent['init worker']} %, API ${once.idle.cpuPercent.api} %); the builds worker's threads: ${threadList(once.idle.threads['builds worker'])}${at}`,
      met: oursCpuPercent <= 5,
    },
    {
      figure: `API restart → first answer / full list (${once.apiRestart.builds} builds)`,
      target: '≤ 1 s / ≤ 3 s at 10,000 builds',
      measured: `${ms(once.apiRestart.firstAnswerMs)} / ${ms(once.apiRestart.fullListMs)} (from ${FROM})${at}`,
      met: once.apiRestart.firstAnswerMs <= 1000 && once.apiRestart.fullListMs <= 3000,
    },
    {
      figure: 'builds worker restart → a new webhook build reaches `stopped`',
      target: '≤ 5 s + the init Job time',
      measured: `${ms(once.workerRestart.toStoppedMs)} (init Job ${ms(once.workerRestart.jobMs)}; worker running after ${ms(once.workerRestart.workerRunningMs)}, from ${FROM})`,
      met: once.workerRestart.toStoppedMs <= 5000 + once.workerRestart.jobMs,
    },
    {
      figure: `Temporal wiped → ${once.wipe.builds} builds adopted back`,
      target: '≤ 120 s for 10,000 builds',
      measured: `${once.wipe.seconds.toFixed(1)} s to every workflow's first task (every workflow started after ${once.wipe.workflowsStartedSeconds.toFixed(1)} s; server restart included)${at}`,
      met: once.wipe.seconds <= 120,
    },
    {
      figure: `limit crossed (one start beyond MAX_STARTED=${MAX_STARTED}) → back within it, on the cluster`,
      target: 'p99 < 2 s',
      measured:
        `n=${restore.n} crossings (starts of each run and the churn), median ${ms(restore.median)}, p99 ${ms(restore.p99)}, max ${ms(restore.max)}; ` +
        `the starts one at a time: ${dist(summary(runs.flatMap((r) => r.started.restores)))}; ` +
        `under churn: ${dist(summary(once.churn.restores))}, ${once.churn.restores.filter((x) => x >= 2000).length} of them 2 s or more ` +
        `(each takes two hops through Temporal, the build's start told to the fleet and the fleet's stop to a build, and the fleet's 200 ms settle; ` +
        `one hop, an update → its local activity, timed every 500 ms over the churn: ${dist(once.churn.hop)}, against ${ms(floor.updateToLocalActivity.median)} at rest; the builds worker's main thread over the churn: callbacks late by ${ms(once.churn.eventLoopDelay.p99)} at p99, ${ms(once.churn.eventLoopDelay.max)} at most, and ${once.churn.cacheMisses} workflow tasks for a workflow out of its cache)` +
        `; the machine's CPU over the churn ${once.churn.cpuPercent['whole machine (every process)']} % of its ${cpus().length * 100} %`,
      met: restore.n > 0 && restore.p99 < 2000,
      detail: restore,
    },
  ];
}

function markdown(report: {
  date: string;
  machine: string;
  code: string;
  figures: Figure[];
  fill: Awaited<ReturnType<typeof fill>>;
  churn: Awaited<ReturnType<typeof churn>>;
  idle: Awaited<ReturnType<typeof idle>>;
  wipe: Awaited<ReturnType<typeof temporalWiped>>;
  floors: ReturnType<typeof floorsAcrossRuns>;
  totalSeconds: number;
  sandboxRoot: string | undefined;
}): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|');
  const missed = report.figures.filter((f) => !f.met);
  const cpuTable = [
    '| process | fill | churn | idle | Temporal wipe |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const name of Object.keys(report.idle.cpuPercent)) {
    const cell = (phase: Record<string, number>) =>
      phase[name] === undefined ? '–' : `${phase[name]} %`;
    cpuTable.push(
      `| ${name} | ${cell(report.fill.cpuPercent)} | ${cell(report.churn.cpuPercent)} | ${cell(report.idle.cpuPercent)} | ${cell(report.wipe.cpuPercent)} |`,
    );
  }
  return [
    `# Scale: ${N} deployed builds`,
    '',
    `${report.date}, ${report.machine}; ${report.code}. Sandbox of its own (kwok cluster, Temporal dev server with SQLite; their databases in ${report.sandboxRoot ?? 'the project directory'}); ` +
      `one builds worker, one init worker and one API, real processes run from ${FROM === 'dist' ? 'the release in dist/' : 'the sources (tsx)'}; ` +
      `\`RUNBOAT_MAX_STARTED=${MAX_STARTED}\`, \`RUNBOAT_MAX_INITIALIZING=${MAX_INITIALIZING}\`, \`RUNBOAT_MAX_DEPLOYED=${N}\`; init Jobs of ${INIT_SECONDS} s. ` +
      `Figures measured in each run are the median over ${RUNS} run(s) of each run's median and p99 (n counts every sample); ` +
      `the fill, churn, idle and the restarts happen once. The whole benchmark took ${(report.totalSeconds / 60).toFixed(1)} min.`,
    '',
    '`npm run bench:scale -- --builds ' + String(N) + '` ([bench/scale.ts](../scale.ts))',
    '',
    '| Figure | Target | Measured | Met |',
    '| --- | --- | --- | --- |',
    ...report.figures.map(
      (f) =>
        `| ${cell(f.figure)} | ${cell(f.target)} | ${cell(f.measured)} | ${f.met ? 'yes' : '**no**'} |`,
    ),
    '',
    missed.length === 0
      ? 'Every target is met.'
      : `**Missed (${missed.length} of ${report.figures.length}):** ${missed.map((f) => f.figure).join('; ')}.`,
    '',
    '## The floor',
    '',
    'Measured in each run, at the same fleet size, with an empty workflow on a worker of the benchmark (`bench/floor-workflows.ts`), workflow starts on a queue no worker polls, a ConfigMap written and watched, and a Node server that answers an empty JSON: what the round trips a build transition, a webhook or a read cannot avoid cost on this Temporal server, this API server and this machine. A latency above is compared with the sum of its floors.',
    '',
    '| floor | measured |',
    '| --- | --- |',
    ...(Object.keys(report.floors) as (keyof Floors)[]).map(
      (k) => `| ${floorNames[k]} | ${dist(report.floors[k])} |`,
    ),
    '',
    '## The fill',
    '',
    `${report.fill.adopted} build Deployments written as the Python runboat leaves them (init-status succeeded) and adopted, ` +
      `${report.fill.throughWebhook} builds through the signed webhook: ${N} deployed in ${report.fill.seconds.toFixed(0)} s ` +
      `(${report.fill.perSecond.toFixed(1)} builds/s, from the first adoption round to the last build stopped).`,
    '',
    '## Churn',
    '',
    `${report.churn.seconds} s of new pushes (keeping ${MAX_INITIALIZING + 10} builds queued or initializing), a start every second and a stop every 3 s: ` +
      `${report.churn.pushes} pushes, ${report.churn.starts} starts, ${report.churn.stops} stops (${report.churn.refused} refused). ` +
      `Sampled every 500 ms: started median ${report.churn.started.median} (max ${report.churn.started.max}); ` +
      `init Jobs median ${report.churn.initializing.median} (peak ${report.churn.peakInitJobs}, limit ${MAX_INITIALIZING}); ` +
      `builds waiting for an init slot (\`todo\`) median ${report.churn.todo.median}; ` +
      `deployed ${report.churn.deployed.min}–${report.churn.deployed.max}.`,
    '',
    '## CPU by process (% of one core)',
    '',
    ...cpuTable,
    '',
    `RSS at idle (MiB): ${Object.entries(report.idle.rssMiB)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}.`,
    `After the wipe (and every build adopted back): fleet workflow ${report.wipe.fleetWorkflow}, init slots workflow ${report.wipe.initSlotsWorkflow}; ` +
      (!report.wipe.limitTried
        ? `no start beyond MAX_STARTED could be tried (fewer builds started than the limit, none stopped).`
        : report.wipe.restoredAfterWipeMs === null
          ? `one start beyond MAX_STARTED was **not** brought back within the limit in 30 s.`
          : `one start beyond MAX_STARTED was brought back within the limit after ${ms(report.wipe.restoredAfterWipeMs)}.`),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const began = now();
  const sandbox = await startSandbox({
    log: (line) => console.log(`[sandbox] ${line}`),
    ...(SANDBOX_ROOT ? { root: SANDBOX_ROOT } : {}),
  });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-scale-'));
  log(`machine: ${describeMachine()}; N=${N}, runs ${RUNS}, work directory ${work}`);
  let b: Bench | undefined;
  try {
    b = await setUp(sandbox, work);
    const filled = await fill(b);
    await startToLimit(b);
    const runs: Run[] = [];
    for (let run = 1; run <= RUNS; run++) runs.push(await measureRun(b, run));
    const churned = await churn(b);
    const idled = await idle(b);
    const restartedApi = await apiRestart(b);
    const restartedWorker = await workerRestart(b);
    const wipe = await temporalWiped(b);
    const once = {
      idle: idled,
      churn: churned,
      apiRestart: restartedApi,
      workerRestart: restartedWorker,
      wipe,
    };
    const report = {
      date: new Date().toISOString(),
      machine: describeMachine(),
      machineInfo: machine(),
      code: codeRevision(),
      builds: N,
      runs: RUNS,
      from: FROM,
      sandboxRoot: SANDBOX_ROOT,
      limits: { maxStarted: MAX_STARTED, maxInitializing: MAX_INITIALIZING, maxDeployed: N },
      initSeconds: INIT_SECONDS,
      totalSeconds: (now() - began) / 1000,
      figures: figures(runs, once),
      floors: floorsAcrossRuns(runs),
      fill: filled,
      ...once,
      runsDetail: runs.map((r) => ({
        utilisation: r.utilisation,
        sse: r.sse,
        unconfiguredPerSecond: r.unconfigured.perSecond,
        listItems: { filtered: r.filtered.items, branch: r.branch.items },
      })),
    };
    const text = markdown(report);
    console.log(text);
    await writeReport('scale', report, text);
  } finally {
    await b?.events.stop().catch(() => undefined);
    await b?.cluster.stop().catch(() => undefined);
    await b?.client.connection.close().catch(() => undefined);
    await Promise.all([b?.api.stop(), b?.buildsWorker.stop(), b?.initWorker.stop()]).catch(
      () => undefined,
    );
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
