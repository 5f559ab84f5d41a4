/**
 * A worker process (`worker/main.ts`) started as an operator would start it, for tests and
 * benchmarks: its own environment, its log in a file, stopped or killed by signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A running worker process. */
export interface WorkerProcess {
  child: ChildProcess;
  logFile: string;
  /** Sends a signal (default SIGTERM) and resolves with the exit code or signal name. */
  stop(signal?: NodeJS.Signals): Promise<string>;
}

/** Starts a worker and resolves once it logs that it runs (its workflow bundle is built). */
export async function spawnWorker(
  env: NodeJS.ProcessEnv,
  logFile: string,
  timeoutMs = 90_000,
): Promise<WorkerProcess> {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(projectRoot, 'worker/main.ts')], {
    cwd: projectRoot,
    env,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<string>((resolveExit) =>
    child.on('exit', (code, signal) => resolveExit(signal ?? String(code))),
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
    const log = await readFile(logFile, 'utf8');
    if (log.includes('worker running')) return worker;
    if (child.exitCode !== null || Date.now() > deadline) {
      await worker.stop('SIGKILL');
      throw new Error(`worker did not start (log ${logFile}):\n${log.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
