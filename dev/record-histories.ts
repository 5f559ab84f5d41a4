/**
 * `npm run histories`: records the history of every path a build and the fleet can take, from the
 * real system (a sandbox, real worker processes, real Kubernetes), as replay fixtures under
 * `test/fixtures/histories/<version>/` (docs/upgrades.md). `<version>` is the package version;
 * `--label <name>` names the folder otherwise. A folder that exists is left alone unless
 * `--replace` is given: never replace the folder of a released version. `--only a,b` records some
 * paths only (for development; the folder then holds those only). `--parallel <n>` (default 4).
 * `--keep` keeps the sandbox's run directory (the workers' logs) after the run.
 *
 * Nothing is written unless every path succeeded.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { cleanupFailingUnless, kubefilesWith } from './kubefiles-fixtures.js';
import type { BuildStatus, CommitInfo } from '../domain/build.js';
import {
  fleetWorkflowId,
  initSlotsWorkflowId,
  resetUpdate,
  startUpdate,
  stateQuery,
  stopUpdate,
  undeployUpdate,
  type BuildState,
} from '../domain/messages.js';
import { buildName } from '../domain/names.js';
import { createKubeClients, type KubeClients } from '../lib/kube.js';
import { connectClient, ensureBuild, type TemporalOptions } from '../lib/temporal.js';
import { startFakeGitHub, type FakeGitHub } from '../test/integration/fake-github.js';
import { historyToJSON } from './history-json.js';
import { OUTCOME_LABEL, RUN_FOR_ANNOTATION } from './kwok-stages.js';
import { runCommand } from './run-command.js';
import { startSandbox, type Sandbox } from './sandbox.js';
import { spawnWorker, type WorkerProcess } from './worker-process.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Where the recorded histories live, one folder per version. */
export const historiesDir = join(projectRoot, 'test', 'fixtures', 'histories');

const image = 'ghcr.io/acme/odoo:16.0';
const CLEANUP = { attempts: 3, retrySeconds: 1 };

function say(line: string): void {
  console.log(`[histories] ${line}`);
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

/** Retries `check` until it stops throwing; then throws its last failure. */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** A namespace of the sandbox, with a task queue pair and a worker of its own. */
interface Env {
  name: string;
  namespace: string;
  client: Client;
  kube: KubeClients;
  temporal: TemporalOptions;
  github: FakeGitHub;
  worker: WorkerProcess;
}

/** The repos file; only the fleet's has a sticky repo (two fleets would both build its head). */
async function reposFile(runDir: string, sticky: boolean): Promise<string> {
  const repos = [
    {
      repo: 'acme/broken',
      branch: '.*',
      builds: [{ image, templateVars: { initPodLabels: { [OUTCOME_LABEL]: 'fail' } } }],
    },
    {
      repo: 'acme/slowinit',
      branch: '.*',
      builds: [{ image, templateVars: { initPodAnnotations: { [RUN_FOR_ANNOTATION]: '6s' } } }],
    },
    {
      repo: 'acme/slowclean',
      branch: '.*',
      builds: [{ image, templateVars: { cleanupPodAnnotations: { [RUN_FOR_ANNOTATION]: '6s' } } }],
    },
    // Cleanup Jobs 1 and 2 fail, the third succeeds: retried within one undeploy.
    {
      repo: 'acme/flakyclean',
      branch: '.*',
      builds: [{ image, kubefiles: await cleanupFailingUnless('-cleanup-3$') }],
    },
    // Cleanup Jobs 1 to 3 fail (cleanup-failed), the fourth (a second undeploy) succeeds.
    {
      repo: 'acme/cleanfail',
      branch: '.*',
      builds: [{ image, kubefiles: await cleanupFailingUnless('-cleanup-[4-9]$') }],
    },
    {
      repo: 'acme/badinit',
      branch: '.*',
      builds: [
        { image, kubefiles: await kubefilesWith('initialize.yaml.njk', () => 'kind: [unclosed\n') },
      ],
    },
    {
      repo: 'acme/baddeploy',
      branch: '.*',
      builds: [
        {
          image,
          kubefiles: await kubefilesWith(
            'deployment.yaml.njk',
            () => 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ buildName }}-pod\n',
          ),
        },
      ],
    },
    { repo: 'acme/sticky', branch: 'main', sticky, builds: [{ image }] },
    { repo: 'acme/.*', branch: '.*', builds: [{ image }] },
  ];
  // In the sandbox's run directory: it goes with the sandbox.
  const file = join(runDir, sticky ? 'repos-sticky.yaml' : 'repos.yaml');
  // JSON is YAML.
  await writeFile(file, JSON.stringify(repos, null, 2));
  return file;
}

async function createEnv(
  sandbox: Sandbox,
  name: string,
  repos: string,
  github: FakeGitHub,
  workerEnv: NodeJS.ProcessEnv,
  policy: Pick<TemporalOptions, 'cancelSuperseded'> = {},
): Promise<Env> {
  const kube = createKubeClients({
    kubeconfig: sandbox.kube.kubeconfig,
    context: sandbox.kube.context,
  });
  const namespace = `hist-${name}-${randomBytes(3).toString('hex')}`;
  await kube.core.createNamespace({ body: { metadata: { name: namespace } } });
  // Pods are refused until the controller-manager made the default ServiceAccount.
  await eventually(() => kube.core.readNamespacedServiceAccount({ name: 'default', namespace }));
  const temporal: TemporalOptions = {
    address: sandbox.temporal.address,
    namespace: sandbox.temporal.namespace,
    buildsTaskQueue: `builds-${namespace}`,
    initTaskQueue: `init-${namespace}`,
    cleanup: CLEANUP,
    ...policy,
  };
  const client = await connectClient(temporal);
  const worker = await spawnWorker(
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUNBOAT_TEMPORAL_ADDRESS: temporal.address,
      RUNBOAT_TEMPORAL_NAMESPACE: temporal.namespace,
      RUNBOAT_BUILDS_TASK_QUEUE: temporal.buildsTaskQueue,
      RUNBOAT_INIT_TASK_QUEUE: temporal.initTaskQueue,
      RUNBOAT_BUILD_NAMESPACE: namespace,
      RUNBOAT_BUILD_DOMAIN: 'runboat.test',
      RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
      RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
      RUNBOAT_REPOS_FILE: repos,
      RUNBOAT_GITHUB_API_URL: github.url,
      RUNBOAT_BASE_URL: 'http://runboat.test',
      RUNBOAT_LOG_LEVEL: 'info',
      RUNBOAT_CLEANUP_ATTEMPTS: String(CLEANUP.attempts),
      RUNBOAT_CLEANUP_RETRY_SECONDS: String(CLEANUP.retrySeconds),
      RUNBOAT_ADOPT_INTERVAL_SECONDS: '1',
      ...workerEnv,
    },
    join(sandbox.runDir, `worker-${name}.log`),
  );
  return { name, namespace, client, kube, temporal, github, worker };
}

/** What one path asks to be saved: workflows by id, every run of each. */
interface Recorded {
  /** Suffix of the file name (none: the path name alone). */
  label?: string;
  workflowId: string;
}

/** One path through the system. */
interface RecordingPath {
  name: string;
  description: string;
  /** main: no limits in the way; fleet: small limits; queue: one init slot, superseding on. */
  env: 'main' | 'fleet' | 'queue';
  run(env: Env): Promise<Recorded[]>;
}

function commit(repo: string, targetBranch: string): CommitInfo {
  return { repo, targetBranch, pr: null, gitCommit: randomBytes(20).toString('hex') };
}

/** Starts the build of a fresh commit; returns its handle and name. */
async function build(
  env: Env,
  repo: string,
  branch: string,
  options: { maxHistoryEvents?: number } = {},
): Promise<{ handle: WorkflowHandle; name: string }> {
  const target = commit(repo, branch);
  const handle = await ensureBuild(env.client, env.temporal, {
    commit: target,
    trigger: { kind: 'api' },
    ...options,
  });
  return { handle: env.client.workflow.getHandle(handle.workflowId), name: buildName(target) };
}

/** The state of the build's current run, once it is `status`. */
function waitFor(
  env: Env,
  name: string,
  status: BuildStatus,
  timeoutMs = 90_000,
): Promise<BuildState> {
  return eventually(async () => {
    const state = await env.client.workflow.getHandle(name).query(stateQuery);
    if (state.status !== status) throw new Error(`${name} is ${state.status}, not ${status}`);
    return state;
  }, timeoutMs);
}

/** Undeploys and waits until the workflow completed. */
async function undeploy(env: Env, name: string): Promise<void> {
  const handle = env.client.workflow.getHandle(name);
  await handle.executeUpdate(undeployUpdate);
  await handle.result();
}

/** Terminates the build's workflow (as when Temporal lost it); resolves once it is adopted. */
async function loseAndAdopt(env: Env, name: string): Promise<void> {
  const handle = env.client.workflow.getHandle(name);
  const { runId } = await handle.describe();
  await handle.terminate('histories: the workflow is lost, the adopter takes the build over');
  await eventually(async () => {
    const now = await env.client.workflow.getHandle(name).describe();
    if (now.runId === runId || now.status.name !== 'RUNNING')
      throw new Error(`${name}: not adopted yet`);
  });
}

async function scaleByHand(env: Env, name: string, replicas: number): Promise<void> {
  await env.kube.apps.replaceNamespacedDeploymentScale({
    name,
    namespace: env.namespace,
    body: { metadata: { name, namespace: env.namespace }, spec: { replicas } },
  });
}

/** Every path; each build runs in its own branch, so paths may run side by side. */
const paths: RecordingPath[] = [
  {
    name: 'happy-path',
    description: 'deploy, init, stopped; start, started; no-op start and stop; stop; undeploy',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/shop', 'happy');
      await waitFor(env, name, 'stopped');
      await handle.executeUpdate(stopUpdate); // a no-op
      await handle.executeUpdate(startUpdate);
      await waitFor(env, name, 'started');
      await handle.executeUpdate(startUpdate); // a no-op
      await handle.executeUpdate(stopUpdate);
      await waitFor(env, name, 'stopped');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'redeploy',
    description: 'reset of a stopped build and of a started one: init again, stopped; undeploy',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/shop', 'redeploy');
      await waitFor(env, name, 'stopped');
      await handle.executeUpdate(resetUpdate);
      await waitFor(env, name, 'stopped');
      await handle.executeUpdate(startUpdate);
      await waitFor(env, name, 'started');
      await handle.executeUpdate(resetUpdate);
      await waitFor(env, name, 'stopped');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'init-failure',
    description: 'the init Job fails: failed; reset fails again; undeploy',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/broken', 'init-failure');
      const failed = await waitFor(env, name, 'failed');
      await handle.executeUpdate(resetUpdate);
      await eventually(async () => {
        const state = await handle.query(stateQuery);
        if (state.status !== 'failed' || state.initGeneration <= failed.initGeneration) {
          throw new Error(`${name}: ${state.status}, init ${state.initGeneration}`);
        }
      });
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'reset-during-init',
    description: 'reset while the init Job runs: the Job is killed, init again, stopped; undeploy',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/slowinit', 'reset-during-init');
      await waitFor(env, name, 'initializing');
      await handle.executeUpdate(resetUpdate);
      await waitFor(env, name, 'stopped');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'undeploy-during-init',
    description: 'undeploy while the init Job runs: the Job is killed, cleanup, gone',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/slowinit', 'undeploy-during-init');
      await waitFor(env, name, 'initializing');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'cleanup-retried',
    description: 'undeploy whose cleanup Job fails twice, the third attempt succeeds: gone',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/flakyclean', 'cleanup-retried');
      await waitFor(env, name, 'stopped');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'cleanup-failed',
    description: 'every cleanup attempt fails: cleanup-failed; a second undeploy succeeds',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/cleanfail', 'cleanup-failed');
      await waitFor(env, name, 'stopped');
      await handle.executeUpdate(undeployUpdate);
      await waitFor(env, name, 'cleanup-failed');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'init-kubefiles-invalid',
    description: 'the init kubefiles do not render: failed (KubefilesInvalid); undeploy',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/badinit', 'kubefiles');
      await waitFor(env, name, 'failed');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'deploy-kubefiles-invalid',
    description:
      'the deployment kubefiles are refused: failed at deploy; reset fails again; undeploy',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/baddeploy', 'kubefiles');
      await waitFor(env, name, 'failed');
      await handle.executeUpdate(resetUpdate);
      await waitFor(env, name, 'failed');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'adopted-stopped',
    description: 'a stopped build loses its workflow and is adopted; start, stop, undeploy',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/shop', 'adopted-stopped');
      await waitFor(env, name, 'stopped');
      await loseAndAdopt(env, name);
      const handle = env.client.workflow.getHandle(name);
      await waitFor(env, name, 'stopped');
      await handle.executeUpdate(startUpdate);
      await waitFor(env, name, 'started');
      await handle.executeUpdate(stopUpdate);
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'adopted-started',
    description: 'a started build loses its workflow and is adopted started; stop, undeploy',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/shop', 'adopted-started');
      await waitFor(env, name, 'stopped');
      await handle.executeUpdate(startUpdate);
      await waitFor(env, name, 'started');
      await loseAndAdopt(env, name);
      await waitFor(env, name, 'started');
      await env.client.workflow.getHandle(name).executeUpdate(stopUpdate);
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'adopted-initializing',
    description:
      'a build loses its workflow while its init Job runs; adopted, the Job too: stopped',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/slowinit', 'adopted-initializing');
      await waitFor(env, name, 'initializing');
      await loseAndAdopt(env, name);
      // The lost run's init activity, told its workflow is gone, may delete the Job the adopted
      // run waits for: the init then ends failed ("Job deleted before it ended").
      const ended = await eventually(async () => {
        const state = await env.client.workflow.getHandle(name).query(stateQuery);
        if (state.status !== 'stopped' && state.status !== 'failed') {
          throw new Error(`${name} is ${state.status}, not stopped or failed`);
        }
        return state;
      }, 90_000);
      if (ended.status === 'failed')
        say(`adopted-initializing ended failed: ${ended.failureReason}`);
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'adopted-failed',
    description: 'a failed build loses its workflow and is adopted failed; reset, undeploy',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/broken', 'adopted-failed');
      await waitFor(env, name, 'failed');
      await loseAndAdopt(env, name);
      await waitFor(env, name, 'failed');
      await env.client.workflow.getHandle(name).executeUpdate(resetUpdate);
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'adopted-undeploying',
    description: 'a build loses its workflow during its cleanup Job; adopted, the undeploy goes on',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/slowclean', 'adopted-undeploying');
      await waitFor(env, name, 'stopped');
      await handle.executeUpdate(undeployUpdate);
      await eventually(async () => {
        const jobs = await env.kube.batch.listNamespacedJob({
          namespace: env.namespace,
          labelSelector: `runboat/build=${name},runboat/job-kind=cleanup`,
        });
        if (jobs.items.length === 0) throw new Error(`${name}: no cleanup Job yet`);
      });
      await loseAndAdopt(env, name);
      await env.client.workflow.getHandle(name).result();
      return [{ workflowId: name }];
    },
  },
  {
    name: 'drift-deleted',
    description: 'the Deployment is deleted by hand: the finalizer holds it, cleanup, gone',
    env: 'main',
    async run(env) {
      const { handle, name } = await build(env, 'acme/shop', 'drift-deleted');
      await waitFor(env, name, 'stopped');
      await env.kube.apps.deleteNamespacedDeployment({ name, namespace: env.namespace });
      await handle.result();
      return [{ workflowId: name }];
    },
  },
  {
    name: 'drift-scaled',
    description: 'the Deployment is scaled by hand to 1 (a start) then to 0 (a stop); undeploy',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/shop', 'drift-scaled');
      await waitFor(env, name, 'stopped');
      await scaleByHand(env, name, 1);
      await waitFor(env, name, 'started');
      await scaleByHand(env, name, 0);
      await waitFor(env, name, 'stopped');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'drift-init-job-deleted',
    description: 'the init Job is deleted by hand while it runs: failed; undeploy',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/slowinit', 'drift-init-job-deleted');
      await waitFor(env, name, 'initializing');
      await eventually(() =>
        env.kube.batch.readNamespacedJob({ name: `${name}-init-1`, namespace: env.namespace }),
      );
      await env.kube.batch.deleteNamespacedJob({
        name: `${name}-init-1`,
        namespace: env.namespace,
        propagationPolicy: 'Background',
      });
      await waitFor(env, name, 'failed');
      await undeploy(env, name);
      return [{ workflowId: name }];
    },
  },
  {
    name: 'continue-as-new',
    description: 'continue-as-new every 25 events, state carried: start, stop, reset, undeploy',
    env: 'main',
    async run(env) {
      const { name } = await build(env, 'acme/shop', 'continue-as-new', { maxHistoryEvents: 25 });
      const handle = () => env.client.workflow.getHandle(name);
      await waitFor(env, name, 'stopped');
      for (const update of [startUpdate, stopUpdate, startUpdate, stopUpdate]) {
        await eventually(() => handle().executeUpdate(update));
        await waitFor(env, name, update === startUpdate ? 'started' : 'stopped');
      }
      await eventually(() => handle().executeUpdate(resetUpdate));
      await waitFor(env, name, 'stopped');
      await eventually(() => handle().executeUpdate(undeployUpdate));
      await handle().result();
      return [{ workflowId: name }];
    },
  },
  {
    name: 'fleet-evicting',
    description:
      'MAX_STARTED=1, MAX_DEPLOYED=3: a fourth build undeploys the oldest; a second start stops the first',
    env: 'fleet',
    async run(env) {
      const names: string[] = [];
      for (const branch of ['one', 'two', 'three', 'four']) {
        const { name } = await build(env, 'acme/shop', `evict-${branch}`);
        names.push(name);
        await waitFor(env, name, 'stopped');
      }
      const [oldest, , third, fourth] = names as [string, string, string, string];
      // The oldest is undeployed by the fleet (the sticky build counts too: 5 deployed).
      await env.client.workflow.getHandle(oldest).result();
      await env.client.workflow.getHandle(third).executeUpdate(startUpdate);
      await waitFor(env, third, 'started');
      await env.client.workflow.getHandle(fourth).executeUpdate(startUpdate);
      await waitFor(env, fourth, 'started');
      await waitFor(env, third, 'stopped');
      return [
        { label: 'undeployed', workflowId: oldest },
        { label: 'stopped', workflowId: third },
        { label: 'fleet', workflowId: fleetWorkflowId(env.temporal.buildsTaskQueue) },
      ];
    },
  },
  {
    name: 'superseded',
    description: 'a newer commit of a branch cancels its build still queued for init',
    env: 'queue',
    async run(env) {
      const running = await build(env, 'acme/slowinit', 'superseded');
      await waitFor(env, running.name, 'initializing');
      const queued = await build(env, 'acme/slowinit', 'superseded');
      await waitFor(env, queued.name, 'todo');
      // Creation times have a one-second grain: the newer commit must come a second later.
      await new Promise((r) => setTimeout(r, 1100));
      const newer = await build(env, 'acme/slowinit', 'superseded');
      await queued.handle.result();
      await waitFor(env, newer.name, 'stopped');
      await waitFor(env, running.name, 'stopped');
      return [
        { label: 'queued', workflowId: queued.name },
        { label: 'newer', workflowId: newer.name },
      ];
    },
  },
  {
    name: 'sticky-head',
    description: 'the fleet builds the head of a sticky branch (from GitHub) at its first check',
    env: 'fleet',
    async run(env) {
      const sha = env.github.heads.get('acme/sticky')?.get('main') ?? '';
      const name = buildName({
        repo: 'acme/sticky',
        targetBranch: 'main',
        pr: null,
        gitCommit: sha,
      });
      await waitFor(env, name, 'stopped');
      return [{ workflowId: name }];
    },
  },
];

interface SavedHistory {
  file: string;
  path: string;
  description: string;
  workflowType: string;
  workflowId: string;
  run: number;
  runs: number;
  status: string;
  events: number;
}

/** Every run of a workflow, oldest first, with its history. */
async function runsOf(client: Client, workflowId: string) {
  const runs: { runId: string; type: string; status: string; start: number }[] = [];
  for await (const run of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    runs.push({
      runId: run.runId,
      type: run.type,
      status: run.status.name,
      start: run.startTime.getTime(),
    });
  }
  runs.sort((a, b) => a.start - b.start);
  return Promise.all(
    runs.map(async (run) => ({
      ...run,
      history: await client.workflow.getHandle(workflowId, run.runId).fetchHistory(),
    })),
  );
}

function parseArgs(argv: string[]) {
  const value = (flag: string) => {
    const index = argv.indexOf(flag);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  return {
    label: value('--label'),
    only: value('--only')?.split(','),
    parallel: Number(value('--parallel') ?? 4),
    replace: argv.includes('--replace'),
    keep: argv.includes('--keep'),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const pkg = JSON.parse(await readFile(join(projectRoot, 'package.json'), 'utf8')) as {
    version: string;
  };
  const label = args.label ?? pkg.version;
  const outDir = join(historiesDir, label);
  if (existsSync(outDir) && !args.replace) {
    throw new Error(
      `${outDir} exists: histories of a released version are never edited; ` +
        'record into a new folder (--label) or, for the unreleased version, pass --replace',
    );
  }
  const chosen = args.only ? paths.filter((path) => args.only?.includes(path.name)) : paths;
  if (chosen.length === 0) throw new Error(`--only ${args.only?.join(',')}: no such path`);
  const gitCommit = await runCommand('git', ['rev-parse', 'HEAD'], { cwd: projectRoot })
    .then((out) => out.trim())
    .catch(() => 'unknown');
  const dirty = await runCommand('git', ['status', '--porcelain', 'workflows', 'domain'], {
    cwd: projectRoot,
  })
    .then((out) => out.trim() !== '')
    .catch(() => false);

  const began = Date.now();
  say(`recording ${chosen.length} paths into ${outDir} (${args.parallel} at once)`);
  const sandbox = await startSandbox({ keep: args.keep, log: (line) => say(`sandbox: ${line}`) });
  const envs: Env[] = [];
  const github = await startFakeGitHub();
  try {
    github.heads.set('acme/sticky', new Map([['main', randomBytes(20).toString('hex')]]));

    say(
      'starting the workers: main (no limits in the way), fleet (MAX_STARTED=1, MAX_DEPLOYED=3), queue (1 init slot)',
    );
    const [main, fleet, queued] = await Promise.all([
      createEnv(sandbox, 'main', await reposFile(sandbox.runDir, false), github, {
        RUNBOAT_MAX_STARTED: '100',
        RUNBOAT_MAX_DEPLOYED: '500',
        RUNBOAT_MAX_INITIALIZING: '8',
      }),
      createEnv(sandbox, 'fleet', await reposFile(sandbox.runDir, true), github, {
        RUNBOAT_MAX_STARTED: '1',
        RUNBOAT_MAX_DEPLOYED: '3',
      }),
      createEnv(
        sandbox,
        'queue',
        await reposFile(sandbox.runDir, false),
        github,
        { RUNBOAT_MAX_INITIALIZING: '1', RUNBOAT_CANCEL_SUPERSEDED: 'true' },
        { cancelSuperseded: true },
      ),
    ]);
    envs.push(main, fleet, queued);
    say(`workers up after ${seconds(began)}`);

    const recorded: { path: RecordingPath; env: Env; items: Recorded[] }[] = [];
    const failures: string[] = [];
    const queue = [...chosen];
    const runOne = async (path: RecordingPath) => {
      const env = { main, fleet, queue: queued }[path.env];
      const started = Date.now();
      say(`▶ ${path.name}: ${path.description}`);
      try {
        const items = await path.run(env);
        recorded.push({ path, env, items });
        say(`✓ ${path.name} in ${seconds(started)}`);
      } catch (error) {
        failures.push(`${path.name}: ${error instanceof Error ? error.message : String(error)}`);
        say(`✗ ${path.name} after ${seconds(started)}: ${String(error)}`);
      }
    };
    // The paths of the fleet (one fleet) and of the queue (one init slot): one after the other.
    const serial = (kind: RecordingPath['env']) => async () => {
      for (const path of queue.filter((p) => p.env === kind)) await runOne(path);
    };
    const mainPaths = queue.filter((path) => path.env === 'main');
    const lanes = [
      serial('fleet')(),
      serial('queue')(),
      ...Array.from({ length: Math.max(1, args.parallel - 1) }, async () => {
        for (let path = mainPaths.shift(); path; path = mainPaths.shift()) await runOne(path);
      }),
    ];
    await Promise.all(lanes);
    if (failures.length > 0) {
      throw new Error(
        `${failures.length} path(s) failed, nothing written:\n${failures.join('\n')}`,
      );
    }

    // The fleet of the main worker served every build above: its history is a path too.
    recorded.push({
      path: {
        name: 'fleet-counting',
        description:
          'the fleet of the main worker: signals from every build, recounts, no eviction',
        env: 'main',
        run: () => Promise.resolve([]),
      },
      env: main,
      items: [{ workflowId: fleetWorkflowId(main.temporal.buildsTaskQueue) }],
    });
    // The init slots of the main worker (8 slots, inits side by side) and of the queue (one
    // slot: builds wait for it, a superseded build gives up its turn): a path too.
    const initSlots: RecordingPath = {
      name: 'init-slots',
      description: 'the init slots of the main worker and of the queue: requests, grants, releases',
      env: 'main',
      run: () => Promise.resolve([]),
    };
    recorded.push({
      path: initSlots,
      env: main,
      items: [{ label: 'main', workflowId: initSlotsWorkflowId(main.temporal.initTaskQueue) }],
    });
    if (chosen.some((path) => path.env === 'queue')) {
      recorded.push({
        path: initSlots,
        env: queued,
        items: [{ label: 'queue', workflowId: initSlotsWorkflowId(queued.temporal.initTaskQueue) }],
      });
    }

    const files = new Map<string, string>();
    const manifest: SavedHistory[] = [];
    for (const { path, env, items } of recorded) {
      for (const item of items) {
        const runs = await runsOf(env.client, item.workflowId);
        runs.forEach((run, index) => {
          const base = item.label ? `${path.name}.${item.label}` : path.name;
          const file = runs.length > 1 ? `${base}.run-${index + 1}.json` : `${base}.json`;
          files.set(file, `${historyToJSON(run.history)}\n`);
          manifest.push({
            file,
            path: path.name,
            description: path.description,
            workflowType: run.type,
            workflowId: item.workflowId,
            run: index + 1,
            runs: runs.length,
            status: run.status,
            events: run.history.events?.length ?? 0,
          });
        });
      }
    }
    manifest.sort((a, b) => a.file.localeCompare(b.file));
    await rm(outDir, { recursive: true, force: true });
    await mkdir(outDir, { recursive: true });
    for (const [file, text] of files) await writeFile(join(outDir, file), text);
    await writeFile(
      join(outDir, 'manifest.json'),
      `${JSON.stringify(
        {
          version: label,
          recordedAt: new Date().toISOString(),
          gitCommit,
          workflowCodeCommitted: !dirty,
          histories: manifest,
        },
        null,
        2,
      )}\n`,
    );
    say(
      `wrote ${files.size} histories of ${recorded.length} paths into ${outDir} in ${seconds(began)}`,
    );
  } finally {
    await Promise.all(envs.map((env) => env.worker.stop('SIGTERM')));
    await Promise.all(envs.map((env) => env.client.connection.close()));
    await github.close();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(`[histories] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
