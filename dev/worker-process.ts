/**
 * The system's processes (`worker/main.ts`, `api/main.ts`) started as an operator would start
 * them, for tests, benchmarks and `npm start`: their own environment, their log in a file,
 * stopped or killed by signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * glibc's allocator settings for the system's processes, as the image's entry point
 * (`deploy/docker-entrypoint.sh`) sets them unless `GLIBC_TUNABLES` is already set. By default
 * glibc raises its trim threshold after large blocks are freed (so memory freed at the top of the
 * heap stays with the process) and gives each busy thread an arena of its own (Temporal's core
 * runs a pool of threads): a builds worker at 1,000 builds held 60 MiB more outside V8's heap,
 * the API at 10,000 builds 20–45 MiB more (docs/operations.md, "Memory").
 */
export const ALLOCATOR_TUNABLES = 'glibc.malloc.trim_threshold=1048576:glibc.malloc.arena_max=2';

/** A running process of the system. */
export interface WorkerProcess {
  child: ChildProcess;
  logFile: string;
  /** Sends a signal (default SIGTERM) and resolves with the exit code or signal name. */
  stop(signal?: NodeJS.Signals): Promise<string>;
}

/** Options of {@link spawnWorker} and {@link spawnApi}. */
export interface SpawnOptions {
  /**
   * `source` (default): the TypeScript sources through tsx. `dist`: the release that
   * `npm run build` wrote into `dist/`, run by plain `node` as in production.
   */
  from?: 'source' | 'dist';
  /** With `from: 'dist'`: the directory holding the release's `dist/` (default: the project's). */
  releaseDir?: string;
  /** Options for node itself, before the entry (e.g. `--prof` to see where a benchmark's CPU goes). */
  nodeArgs?: readonly string[];
}

/** Starts a worker and resolves once it logs that it runs (its workflow bundle is built). */
export function spawnWorker(
  env: NodeJS.ProcessEnv,
  logFile: string,
  timeoutMs = 90_000,
  options: SpawnOptions = {},
): Promise<WorkerProcess> {
  // Several workers share this machine: each takes a free port for its health and metrics
  // unless told otherwise (its start-up line says which).
  const withPort = { RUNBOAT_WORKER_METRICS_PORT: '0', ...env };
  return spawnSystemProcess('worker/main', 'worker running', withPort, logFile, timeoutMs, options);
}

/** Starts the API and resolves with it and its URL once it listens. */
export async function spawnApi(
  env: NodeJS.ProcessEnv,
  logFile: string,
  timeoutMs = 60_000,
  options: SpawnOptions = {},
): Promise<WorkerProcess & { url: string }> {
  const api = await spawnSystemProcess(
    'api/main',
    'api listening',
    env,
    logFile,
    timeoutMs,
    options,
  );
  const log = await readFile(logFile, 'utf8');
  // The last one: a restarted API (`npm start`) appends to the log of the one before.
  const url = [...log.matchAll(/"url":"(http:[^"]+)"[^\n]*api listening/g)].at(-1)?.[1];
  if (!url) throw new Error(`api log has no URL: ${log.slice(-2000)}`);
  return { ...api, url };
}

/** The processes started here that still run. */
const alive = new Set<ChildProcess>();
let reaping = false;

/**
 * Kills the processes started here when this one ends, however it ends: a benchmark stopped
 * with Ctrl-C (or killed) must not leave a worker and an API running against a sandbox that is
 * gone, retrying and taking CPU from the next run.
 */
function reapOnExit(): void {
  if (reaping) return;
  reaping = true;
  process.once('exit', () => {
    for (const child of alive) child.kill('SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      for (const child of alive) child.kill('SIGKILL');
      // Then the signal's own ending, as if nobody had listened.
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    // Only where nobody else handles the signal: a host with its own handler keeps it.
    if (process.listenerCount(signal) === 0) process.on(signal, onSignal);
  }
}

async function spawnSystemProcess(
  entry: string,
  readyLine: string,
  env: NodeJS.ProcessEnv,
  logFile: string,
  timeoutMs: number,
  options: SpawnOptions,
): Promise<WorkerProcess> {
  const args = [
    ...(options.nodeArgs ?? []),
    ...(options.from === 'dist'
      ? [join(options.releaseDir ?? projectRoot, 'dist', `${entry}.js`)]
      : ['--import', 'tsx', join(projectRoot, `${entry}.ts`)]),
  ];
  // Only what this process writes counts: a restarted one appends to its predecessor's log.
  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, args, {
    cwd: projectRoot,
    env: { GLIBC_TUNABLES: ALLOCATOR_TUNABLES, ...env },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  alive.add(child);
  reapOnExit();
  const exited = new Promise<string>((resolveExit) =>
    child.on('exit', (code, signal) => {
      alive.delete(child);
      resolveExit(signal ?? String(code));
    }),
  );
  const worker: WorkerProcess = {
    child,
    logFile,
    stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = (await readFile(logFile)).subarray(logStart).toString('utf8');
    if (log.includes(readyLine)) return worker;
    if (child.exitCode !== null || Date.now() > deadline) {
      await worker.stop('SIGKILL');
      throw new Error(`${entry} did not start (log ${logFile}):\n${log.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
