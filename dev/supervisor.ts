/**
 * Supervision of the processes `npm start` runs (the worker, the API): one that exits unasked is
 * started again after a backoff, with a message; after too many quick crashes in a row the
 * supervisor gives up and says so, rather than crash-looping unseen.
 */
import type { WorkerProcess } from './worker-process.js';

/** Options of {@link supervise}. */
export interface SuperviseOptions<P extends WorkerProcess> {
  /** Name in the messages (`worker`, `api`). */
  name: string;
  /** Starts the process; resolves once it runs, rejects when it cannot start. */
  start: () => Promise<P>;
  log: (line: string) => void;
  /** Called once when the supervisor gives up, with the reason. */
  onGiveUp: (reason: string) => void;
  /** A process that ran less than this long crashed quickly (default 30 s). */
  quickMs?: number;
  /** Quick crashes in a row before giving up (default 5). */
  maxQuickCrashes?: number;
  /** Wait before the first restart, doubled after each quick crash (default 1 s, at most 30 s). */
  backoffMs?: number;
  /** After a stop signal, how long before SIGKILL (default 30 s). */
  stopTimeoutMs?: number;
}

/** A supervised process. */
export interface Supervised<P extends WorkerProcess> {
  /** The process running now (undefined between a crash and its restart). */
  readonly current: P | undefined;
  /** Stops the process for good (no restart): SIGTERM, then SIGKILL after the timeout. */
  stop(): Promise<string | undefined>;
}

function describeExit(code: string): string {
  return /^\d+$/.test(code) ? `exit code ${code}` : `signal ${code}`;
}

/**
 * Starts a process and keeps it running. Rejects when the first start fails (a start that fails
 * part-way is the caller's to unwind); later failures are retried, then given up.
 */
export async function supervise<P extends WorkerProcess>(
  options: SuperviseOptions<P>,
): Promise<Supervised<P>> {
  const quickMs = options.quickMs ?? 30_000;
  const maxQuick = options.maxQuickCrashes ?? 5;
  const firstBackoff = options.backoffMs ?? 1000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
  const { name, log } = options;

  let current: P | undefined;
  let stopping = false;
  let quickCrashes = 0;
  let restarting: Promise<void> | undefined;
  let wake: (() => void) | undefined;

  const watch = (process: P) => {
    const startedAt = Date.now();
    process.child.once('exit', (code, signal) => {
      if (stopping) return;
      current = undefined;
      const ranMs = Date.now() - startedAt;
      quickCrashes = ranMs < quickMs ? quickCrashes + 1 : 1;
      const how = describeExit(signal ?? String(code));
      restarting = restart(
        `${name} (pid ${process.child.pid}) exited unasked (${how}) after ${(ranMs / 1000).toFixed(1)}s`,
        process.logFile,
      );
    });
  };

  const restart = async (what: string, logFile: string): Promise<void> => {
    for (;;) {
      if (stopping) return;
      if (quickCrashes >= maxQuick) {
        const reason = `${name} crashed ${quickCrashes} times in a row, each within ${quickMs / 1000}s of its start: giving up (its log: ${logFile})`;
        log(reason);
        options.onGiveUp(reason);
        return;
      }
      const waitMs = Math.min(firstBackoff * 2 ** Math.max(0, quickCrashes - 1), 30_000);
      log(`${what}; restarting it in ${waitMs / 1000}s (log ${logFile})`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, waitMs);
      });
      if (stopping) return;
      try {
        const started = await options.start();
        if (stopping) {
          await started.stop('SIGTERM');
          return;
        }
        current = started;
        watch(started);
        log(`${name} restarted (pid ${started.child.pid})`);
        return;
      } catch (error) {
        quickCrashes++;
        what = `${name} failed to restart (${(error as Error).message.split('\n')[0]})`;
      }
    }
  };

  current = await options.start();
  watch(current);
  log(`${name} started (pid ${current.child.pid})`);

  return {
    get current() {
      return current;
    },
    async stop() {
      stopping = true;
      wake?.();
      await restarting;
      const running = current;
      if (!running) return undefined;
      const killer = setTimeout(() => {
        log(
          `${name} (pid ${running.child.pid}) did not stop within ${stopTimeoutMs / 1000}s: killing it`,
        );
        void running.stop('SIGKILL');
      }, stopTimeoutMs);
      const exit = await running.stop('SIGTERM');
      clearTimeout(killer);
      log(`${name} (pid ${running.child.pid}) stopped (${describeExit(exit)})`);
      return exit;
    },
  };
}
