/**
 * The local sandbox: a Temporal dev server and a kwok Kubernetes cluster, side by side on
 * loopback, each sandbox in its own run directory with its own free ports, so that two can run at
 * once (a test run and `npm start`).
 *
 * Nothing outlives its owner: a detached watchdog tears the sandbox down when the process that
 * started it dies, even by SIGKILL, and a start first reaps sandboxes whose owner is gone.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  deleteKwokCluster,
  startKwokCluster,
  type KwokCluster,
  type KwokClusterOptions,
} from './kwok-cluster.js';
import { runCommand } from './run-command.js';
import { startTemporalServer, stopProcess } from './temporal-server.js';
import { ensureTools, isAlive, type Toolset } from './tools.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Everything a client needs to reach a sandbox; written to `<runDir>/sandbox.json`. */
export interface SandboxInfo {
  id: string;
  runDir: string;
  /** The process that owns the sandbox; the watchdog tears it down when this one dies. */
  ownerPid: number;
  startedAt: string;
  temporal: { pid: number; address: string; namespace: string; uiUrl: string; dbFile: string };
  kube: { name: string; kubeconfig: string; context: string; server: string; workDir: string };
  kwokctl: string;
  /** The kubectl matching the cluster's version. */
  kubectl: string;
  /** The Temporal CLI running the dev server. */
  temporalCli: string;
}

/** A running sandbox. */
export interface Sandbox extends SandboxInfo {
  tools: Toolset;
  /** Tears the sandbox down; its run directory is removed unless `keep` was asked for. */
  stop(): Promise<void>;
}

/** Options of {@link startSandbox}. */
export interface SandboxOptions {
  /** Parent of the run directories (default `RUNBOAT_SANDBOX_DIR` or `<project>/.sandbox`). */
  root?: string;
  /** Keep the run directory (logs, databases) after stop. */
  keep?: boolean;
  /** Number of fake Kubernetes nodes (default 2). */
  nodes?: number;
  /** How long a Job's pod runs before ending (default 500 ms). */
  jobRunMs?: number;
  log?: (line: string) => void;
}

/** The directory holding every sandbox run directory. */
export function sandboxRoot(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.RUNBOAT_SANDBOX_DIR ?? join(projectRoot, '.sandbox'));
}

/** Stops every process of a sandbox. Each part is stopped even if another fails. */
export async function teardownSandbox(info: SandboxInfo): Promise<void> {
  const results = await Promise.allSettled([
    stopProcess(info.temporal.pid),
    deleteKwokCluster(info.kube.name, info.kube.workDir, info.kwokctl),
  ]);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length > 0) {
    throw new Error(
      `sandbox ${info.id} teardown: ${failures.map((f) => String(f.reason)).join('; ')}`,
    );
  }
}

/**
 * Restarts the sandbox's Temporal server on the same ports, so that its clients reconnect; with
 * `wipe`, its database is deleted first and Temporal forgets every workflow (a disaster drill).
 * Returns the updated information, also written to `sandbox.json`.
 */
export async function restartTemporal(
  info: SandboxInfo,
  options: { wipe: boolean },
): Promise<SandboxInfo> {
  await stopProcess(info.temporal.pid);
  if (options.wipe) {
    for (const suffix of ['', '-wal', '-shm'])
      await rm(`${info.temporal.dbFile}${suffix}`, { force: true });
  }
  const server = await startTemporalServer({
    temporalPath: info.temporalCli,
    dbFile: info.temporal.dbFile,
    logFile: join(info.runDir, 'temporal.log'),
    port: Number(info.temporal.address.split(':').pop()),
    uiPort: Number(new URL(info.temporal.uiUrl).port),
  });
  const updated: SandboxInfo = { ...info, temporal: { ...info.temporal, pid: server.pid } };
  await writeFile(join(info.runDir, 'sandbox.json'), JSON.stringify(updated, null, 2));
  return updated;
}

/**
 * Kills the sandbox's kube-apiserver and starts it again `downMs` later with the same command
 * line, environment and ports (its pid file updated, so teardown still finds it); resolves once it
 * answers. Everything else of the control plane keeps running, as in a real API server restart.
 */
export async function restartApiServer(info: SandboxInfo, downMs = 0): Promise<void> {
  const clusterDir = join(info.kube.workDir, 'clusters', info.kube.name);
  const pidFile = join(clusterDir, 'pids', 'kube-apiserver.pid');
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  const [argv, environ, cwd] = await Promise.all([
    readFile(`/proc/${pid}/cmdline`, 'utf8'),
    readFile(`/proc/${pid}/environ`, 'utf8'),
    readlink(`/proc/${pid}/cwd`),
  ]);
  const [file, ...args] = argv.split('\0').filter(Boolean);
  if (!file) throw new Error(`kube-apiserver ${pid}: no command line`);
  const env = Object.fromEntries(
    environ
      .split('\0')
      .filter(Boolean)
      .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  );
  await stopProcess(pid);
  await new Promise((r) => setTimeout(r, downMs));
  const log = openSync(join(clusterDir, 'logs', 'kube-apiserver.log'), 'a');
  const child = spawn(file, args, { cwd, env, detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  await writeFile(pidFile, String(child.pid));
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await runCommand(info.kubectl, [
        '--kubeconfig',
        info.kube.kubeconfig,
        '--context',
        info.kube.context,
        'get',
        '--raw',
        '/readyz',
      ]);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Reads the state file of a run directory, if it has one. */
export async function readSandboxInfo(runDir: string): Promise<SandboxInfo | undefined> {
  const file = join(runDir, 'sandbox.json');
  if (!existsSync(file)) return undefined;
  return JSON.parse(await readFile(file, 'utf8')) as SandboxInfo;
}

/** Tears down and removes sandboxes whose owner process is gone; returns their ids. */
export async function reapStaleSandboxes(root: string): Promise<string[]> {
  if (!existsSync(root)) return [];
  const reaped: string[] = [];
  for (const entry of await readdir(root)) {
    const runDir = join(root, entry);
    const info = await readSandboxInfo(runDir).catch(() => undefined);
    if (!info || isAlive(info.ownerPid)) continue;
    await teardownSandbox(info).catch(() => undefined);
    await rm(runDir, { recursive: true, force: true });
    reaped.push(info.id);
  }
  return reaped;
}

function startWatchdog(runDir: string, ownerPid: number): number | undefined {
  const log = openSync(join(runDir, 'watchdog.log'), 'a');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(projectRoot, 'dev', 'watchdog.ts'), runDir, String(ownerPid)],
    { cwd: projectRoot, detached: true, stdio: ['ignore', log, log] },
  );
  closeSync(log);
  child.unref();
  return child.pid;
}

/**
 * Starts the cluster, and once more from scratch if the first start fails: on a loaded machine a
 * control plane component occasionally misses its start-up window, and a test run should not end
 * on that.
 */
async function startClusterWithRetry(
  options: KwokClusterOptions,
  log: (line: string) => void,
): Promise<KwokCluster> {
  try {
    return await startKwokCluster(options);
  } catch (error) {
    log(`kubernetes failed to start (${(error as Error).message.split('\n')[0]}); retrying once`);
    await cp(
      join(options.workDir, 'clusters', options.name, 'logs'),
      `${options.workDir}-first-attempt-logs`,
      {
        recursive: true,
      },
    ).catch(() => undefined);
    await deleteKwokCluster(options.name, options.workDir, options.tools.kwokctl).catch(
      () => undefined,
    );
    await rm(join(options.workDir, 'clusters', options.name), { recursive: true, force: true });
    return startKwokCluster(options);
  }
}

function elapsed(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)}s`;
}

/**
 * Provisions the tools if needed, then starts a Temporal dev server and a kwok cluster in a new
 * run directory, and returns once both serve.
 */
export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const log = options.log ?? ((line: string) => console.log(`[sandbox] ${line}`));
  const root = options.root ?? sandboxRoot();
  const reaped = await reapStaleSandboxes(root);
  if (reaped.length > 0) log(`reaped sandboxes left by dead processes: ${reaped.join(', ')}`);

  const tools = await ensureTools({ log: (line) => log(`tools: ${line}`) });
  const id = `rb-${randomBytes(4).toString('hex')}`;
  const runDir = join(root, id);
  await mkdir(runDir, { recursive: true });
  const started = Date.now();
  log(`starting ${id} in ${runDir}`);

  const kubeWorkDir = join(runDir, 'kwok');
  const dbFile = join(runDir, 'temporal.db');
  const [temporal, kube] = await Promise.allSettled([
    startTemporalServer({
      temporalPath: tools.temporal,
      dbFile,
      logFile: join(runDir, 'temporal.log'),
    }).then((server) => {
      log(`temporal dev server up at ${server.address} in ${elapsed(started)}`);
      return server;
    }),
    startClusterWithRetry(
      {
        name: id,
        workDir: kubeWorkDir,
        kubeconfig: join(runDir, 'kubeconfig'),
        tools,
        nodes: options.nodes ?? 2,
        jobRunMs: options.jobRunMs ?? 500,
      },
      log,
    ).then((cluster) => {
      log(`kubernetes up at ${cluster.server} in ${elapsed(started)}`);
      return cluster;
    }),
  ]);
  if (temporal.status === 'rejected' || kube.status === 'rejected') {
    if (temporal.status === 'fulfilled') await stopProcess(temporal.value.pid);
    // Keep the control plane's logs: deleting the cluster removes its directory.
    await cp(join(kubeWorkDir, 'clusters', id, 'logs'), join(runDir, 'kube-logs'), {
      recursive: true,
    }).catch(() => undefined);
    await deleteKwokCluster(id, kubeWorkDir, tools.kwokctl).catch(() => undefined);
    const reasons = [temporal, kube]
      .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      .map((r) => String(r.reason instanceof Error ? r.reason.message : r.reason));
    throw new Error(`sandbox ${id} failed to start (logs in ${runDir}):\n${reasons.join('\n')}`);
  }

  const info: SandboxInfo = {
    id,
    runDir,
    ownerPid: process.pid,
    startedAt: new Date().toISOString(),
    temporal: { ...temporal.value, dbFile },
    kube: { ...kube.value, workDir: kubeWorkDir },
    kwokctl: tools.kwokctl,
    kubectl: tools.kubectl,
    temporalCli: tools.temporal,
  };
  await writeFile(join(runDir, 'sandbox.json'), JSON.stringify(info, null, 2));
  const watchdog = startWatchdog(runDir, process.pid);
  log(`sandbox ${id} ready in ${elapsed(started)}`);

  let stopped: Promise<void> | undefined;
  return {
    ...info,
    tools,
    stop() {
      stopped ??= (async () => {
        const stopping = Date.now();
        if (watchdog !== undefined) await stopProcess(watchdog, 1000).catch(() => undefined);
        // Re-read: a restarted Temporal server has a new pid.
        await teardownSandbox((await readSandboxInfo(runDir)) ?? info);
        if (!options.keep) await rm(runDir, { recursive: true, force: true });
        log(`sandbox ${id} stopped in ${elapsed(stopping)}`);
      })();
      return stopped;
    },
  };
}

/** Prints how to reach a running sandbox. */
export function describeSandbox(sandbox: Sandbox): string {
  return [
    `Temporal gRPC     ${sandbox.temporal.address} (namespace ${sandbox.temporal.namespace})`,
    `Temporal Web UI   ${sandbox.temporal.uiUrl}`,
    `Kubernetes API    ${sandbox.kube.server}`,
    `kubeconfig        ${sandbox.kube.kubeconfig} (context ${sandbox.kube.context})`,
    `kubectl           ${sandbox.tools.kubectl} --kubeconfig ${sandbox.kube.kubeconfig} get nodes`,
    `run directory     ${sandbox.runDir}`,
    `reuse in tests    RUNBOAT_TEST_SANDBOX=${sandbox.runDir} npm test`,
  ].join('\n');
}
