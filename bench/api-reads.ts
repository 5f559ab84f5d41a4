/**
 * Benchmark of the API's reads and restart at the size of a large farm, on a sandbox of its own:
 * N build Deployments (default 10,000: 10 repos `acme/legacy-<k>` of 100 branches of 10 builds,
 * written as the Python runboat leaves them) read by one API process through its informer, no
 * worker running. Measured with a keep-alive client, one request at a time: `GET /api/v1/builds`
 * of one branch (10 builds) and of one repo (N/10 builds), `GET /api/v1/status`; a new client's
 * build events stream until it received every build; then the API restarted: the first answer and
 * the full list. Also webhooks for a repo that is not configured (bodies signed beforehand): one at
 * a time and 10 at a time. Writes bench/reports/api-reads.*.
 *
 *   npm run build && npx tsx bench/api-reads.ts [--builds 10000] [--from dist|source]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../dev/ports.js';
import { startSandbox } from '../dev/sandbox.js';
import { pushPayload } from '../dev/webhook-deliveries.js';
import { spawnApi } from '../dev/worker-process.js';
import { buildName } from '../domain/names.js';
import { createKubeClients } from '../lib/kube.js';
import {
  describeMachine,
  legacyDeployment,
  sampleProcess,
  summary,
  writeReport,
  type Summary,
} from './bench-kit.js';
import { BenchClient, signedDelivery, timed } from './http-client.js';
import { readEvents } from './observers.js';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: '10000' },
    from: { type: 'string', default: 'dist' },
    requests: { type: 'string', default: '300' },
    /** The directory holding the `dist/` to run (default: this project's). */
    release: { type: 'string' },
  },
});
const N = Number(args.builds);
const FROM = args.from === 'source' ? 'source' : 'dist';
const REQUESTS = Number(args.requests);
const SPAWN = { from: FROM, ...(args.release ? { releaseDir: args.release } : {}) } as const;
const REPOS = 10;
/** Branches per repo: 10 builds each. */
const BRANCHES = Math.max(1, Math.floor(N / REPOS / 10));
const SECRET = 'bench-secret';
const NAMESPACE = 'bench';
const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => console.log(`[api-reads] ${line}`);

async function main(): Promise<void> {
  const began = now();
  const sandbox = await startSandbox({ log: (line) => log(`sandbox: ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-api-reads-'));
  let stopApi: (() => Promise<string>) | undefined;
  try {
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    await kube.core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    const fillStarted = now();
    let written = 0;
    let next = 0;
    // A few requests at once: the sandbox's API server shares the machine.
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < N) {
          const i = next++;
          const commit = {
            repo: `acme/legacy-${i % REPOS}`,
            targetBranch: `branch-${Math.floor(i / REPOS) % BRANCHES}`,
            pr: null,
            gitCommit: randomBytes(20).toString('hex'),
          };
          const name = buildName(commit);
          await kube.apps.createNamespacedDeployment({
            namespace: NAMESPACE,
            body: legacyDeployment({
              name,
              ...commit,
              lastScaled: new Date(Date.now() - (N - i) * 60_000).toISOString(),
            }),
          });
          if (++written % 1000 === 0) log(`${written}/${N} Deployments written`);
        }
      }),
    );
    const fillSeconds = (now() - fillStarted) / 1000;
    log(`${N} Deployments written in ${fillSeconds.toFixed(0)} s`);

    const reposFile = join(work, 'repos.yaml');
    await writeFile(
      reposFile,
      JSON.stringify([{ repo: 'acme/legacy-.*', branch: '.*', builds: [{ image: 'x:1' }] }]),
    );
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUNBOAT_TEMPORAL_ADDRESS: sandbox.temporal.address,
      RUNBOAT_TEMPORAL_NAMESPACE: sandbox.temporal.namespace,
      RUNBOAT_BUILDS_TASK_QUEUE: 'bench-builds',
      RUNBOAT_BUILD_NAMESPACE: NAMESPACE,
      RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
      RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
      RUNBOAT_REPOS_FILE: reposFile,
      RUNBOAT_MAX_DEPLOYED: String(N),
      // A port of its own: the restarted API is asked on the same one.
      RUNBOAT_API_PORT: String(await freePort()),
      RUNBOAT_WEBHOOK_SECRET: SECRET,
    };
    const logFile = join(work, 'api.log');
    let api = await spawnApi(env, logFile, 300_000, SPAWN);
    stopApi = () => api.stop();
    const client = new BenchClient(api.url);

    const gets = async (path: string) => {
      let items = 0;
      const call = async () => {
        const answer = await client.get(path);
        if (answer.status !== 200) throw new Error(`GET ${path}: ${answer.status}`);
        const body = JSON.parse(answer.body) as unknown;
        items = Array.isArray(body) ? body.length : 1;
      };
      await timed(20, 1, call);
      const { latencies } = await timed(REQUESTS, 1, call);
      return { path, items, ...summary(latencies) };
    };
    const all = (JSON.parse((await client.get('/api/v1/builds')).body) as unknown[]).length;
    if (all !== N) throw new Error(`the API lists ${all} builds, not ${N}`);
    const branch = await gets(
      `/api/v1/builds?repo=acme/legacy-0&target_branch=branch-${BRANCHES - 1}`,
    );
    const repo = await gets('/api/v1/builds?repo=acme/legacy-3');
    const status = await gets('/api/v1/status');

    // A new client's stream: until every build came once.
    const controller = new AbortController();
    const sseStarted = now();
    let received = 0;
    let sseMs = NaN;
    await readEvents(`${api.url}/api/v1/build-events`, controller.signal, (event) => {
      if (event !== 'upd') return;
      if (++received < N) return;
      sseMs = now() - sseStarted;
      return false;
    });
    controller.abort();

    // Webhooks for a repo that is not configured: answered 200, ignored.
    const deliveries = Array.from({ length: 3000 }, (_, i) =>
      signedDelivery(
        'push',
        pushPayload({
          repo: 'Other/Unconfigured',
          branch: `b-${i}`,
          after: randomBytes(20).toString('hex'),
        }),
        SECRET,
        `bench-${i}`,
      ),
    );
    const deliver = async (i: number) => {
      const answer = await client.send(deliveries[i % deliveries.length]!);
      if (answer.status !== 200) throw new Error(`webhook: ${answer.status} ${answer.body}`);
    };
    await timed(200, 1, deliver);
    const webhookOne = await timed(1000, 1, deliver);
    await timed(200, 10, deliver);
    const webhookTen = await timed(3000, 10, deliver);

    // Restart: from the process's spawn to its first answer, and to the full list.
    client.close();
    await api.stop();
    const restartStarted = now();
    const spawning = spawnApi(env, logFile, 300_000, SPAWN);
    let firstAnswer = NaN;
    let fullList = NaN;
    let firstStatus = 0;
    while (Number.isNaN(fullList)) {
      try {
        const response = await fetch(`${api.url}/api/v1/builds`);
        if (Number.isNaN(firstAnswer)) {
          firstAnswer = now() - restartStarted;
          firstStatus = response.status;
        }
        const list = (await response.json()) as unknown;
        if (response.status === 200 && Array.isArray(list) && list.length >= N)
          fullList = now() - restartStarted;
      } catch {
        // Not answering yet.
      }
      if (Number.isNaN(fullList)) await sleep(10);
      if (now() - restartStarted > 120_000) throw new Error('the API did not come back');
    }
    api = await spawning;
    // CPU time, less sensitive than the wall clock to what else the machine runs.
    const restartCpuSeconds = api.child.pid ? (await sampleProcess(api.child.pid)).cpuSeconds : NaN;
    const loadAverage = loadavg()
      .map((load) => load.toFixed(1))
      .join(' / ');

    const ms = (s: Summary) =>
      `n=${s.n}, median ${s.median.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, max ${s.max.toFixed(1)} ms`;
    const rate = (r: { latencies: number[]; perSecond: number }) =>
      `${ms(summary(r.latencies))}, ${r.perSecond.toFixed(0)}/s`;
    const lines = [
      `# API reads at ${N} builds`,
      '',
      `${new Date().toISOString()}, ${describeMachine()}; node ${process.version}. The API run from ${FROM === 'dist' ? 'the release (`dist/`)' : 'the sources (tsx)'}, its index fed by its informer from ${N} build Deployments of a kwok sandbox (written in ${fillSeconds.toFixed(0)} s), no worker. One request at a time over a keep-alive connection unless said; the client runs on the same machine.`,
      '',
      `\`npx tsx bench/api-reads.ts --builds ${N} --from ${FROM}\``,
      '',
      '| Figure | Target | Measured |',
      '| --- | --- | --- |',
      `| GET /api/v1/builds of one branch (${branch.items} builds) | p99 ≤ 2 ms | ${ms(branch)} |`,
      `| GET /api/v1/status | p99 ≤ 2 ms | ${ms(status)} |`,
      `| GET /api/v1/builds of one repo (${repo.items} builds) | p99 ≤ 20 ms | ${ms(repo)} |`,
      `| build events: a new client's replay of ${N} builds | ≤ 1 s | ${sseMs.toFixed(0)} ms |`,
      `| webhook for a repo not configured, one at a time | p50 ≤ 2 ms | ${rate(webhookOne)} |`,
      `| webhook for a repo not configured, 10 at a time | ≥ 2,500/s | ${rate(webhookTen)} |`,
      `| API restart → first answer (${firstStatus}) | ≤ 1 s | ${firstAnswer.toFixed(0)} ms |`,
      `| API restart → the full list of ${N} | ≤ 3 s | ${fullList.toFixed(0)} ms |`,
      `| API restart: the API's CPU time from its spawn to that full list | | ${(restartCpuSeconds * 1000).toFixed(0)} ms |`,
      '',
      `Load average (1 / 5 / 15 min) at the end of the restart: ${loadAverage}.`,
      '',
      `The whole benchmark took ${((now() - began) / 60_000).toFixed(1)} min.`,
      '',
    ];
    console.log(lines.join('\n'));
    await writeReport(
      'api-reads',
      {
        builds: N,
        from: FROM,
        branch,
        status,
        repo,
        sseReplayMs: sseMs,
        webhookOne: { ...summary(webhookOne.latencies), perSecond: webhookOne.perSecond },
        webhookTen: { ...summary(webhookTen.latencies), perSecond: webhookTen.perSecond },
        restart: {
          firstAnswerMs: firstAnswer,
          firstStatus,
          fullListMs: fullList,
          cpuMs: restartCpuSeconds * 1000,
        },
        loadAverage: loadavg(),
      },
      lines.join('\n'),
    );
  } finally {
    await stopApi?.();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
