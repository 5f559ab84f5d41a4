/**
 * The supervision `npm start` applies to its worker and API, with real (tiny) processes: a
 * process that exits unasked is restarted with a backoff, and after too many quick crashes the
 * supervisor gives up with a message naming the process and its log.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { supervise } from '../../dev/supervisor.js';
import type { WorkerProcess } from '../../dev/worker-process.js';

/** A node process running `code`, as the supervisor sees a worker. */
function nodeProcess(code: string): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  const exited = new Promise<string>((resolve) =>
    child.on('exit', (exitCode, signal) => resolve(signal ?? String(exitCode))),
  );
  return Promise.resolve({
    child,
    logFile: '/var/log/example.log',
    stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  });
}

describe('the supervisor of npm start', () => {
  it('restarts a crashing process with a growing backoff, then gives up with a message', async () => {
    const lines: string[] = [];
    let starts = 0;
    const gaveUp = new Promise<string>((resolve) => {
      void supervise({
        name: 'worker',
        start: () => {
          starts++;
          return nodeProcess('setTimeout(() => process.exit(3), 50)');
        },
        log: (line) => lines.push(line),
        onGiveUp: resolve,
        quickMs: 10_000,
        maxQuickCrashes: 3,
        backoffMs: 100,
      });
    });
    const reason = await gaveUp;
    expect(starts).toBe(3);
    expect(reason).toBe(
      'worker crashed 3 times in a row, each within 10s of its start: giving up (its log: /var/log/example.log)',
    );
    expect(lines.filter((line) => line.includes('restarting it in'))).toEqual([
      expect.stringMatching(
        /^worker \(pid \d+\) exited unasked \(exit code 3\) after .*restarting it in 0\.1s/,
      ),
      expect.stringMatching(/exited unasked \(exit code 3\) .*restarting it in 0\.2s/),
    ]);
  });

  it('restarts a killed process and stops it for good when asked', async () => {
    const lines: string[] = [];
    const supervised = await supervise({
      name: 'api',
      start: () => nodeProcess('setInterval(() => {}, 1000)'),
      log: (line) => lines.push(line),
      onGiveUp: () => undefined,
      backoffMs: 50,
    });
    const first = supervised.current!;
    first.child.kill('SIGKILL');
    await expect
      .poll(() => supervised.current && supervised.current !== first, { timeout: 5000 })
      .toBe(true);
    const second = supervised.current!;
    expect(await supervised.stop()).toBe('SIGTERM');
    expect(second.child.signalCode).toBe('SIGTERM');
    expect(lines).toEqual([
      `api started (pid ${first.child.pid})`,
      expect.stringMatching(
        new RegExp(`^api \\(pid ${first.child.pid}\\) exited unasked \\(signal SIGKILL\\)`),
      ),
      `api restarted (pid ${second.child.pid})`,
      `api (pid ${second.child.pid}) stopped (signal SIGTERM)`,
    ]);
  });
});
