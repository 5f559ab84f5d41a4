/**
 * `npm start` as a developer runs it, with its sandbox in a temporary directory: it restarts a
 * worker that crashed, a SIGTERM to the npm process stops every process it started and the
 * sandbox, and a busy RUNBOAT_API_PORT stops the start with a message naming it and nothing left
 * behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/ports.js';
import type { SandboxInfo } from '../../dev/sandbox.js';
import { isAlive } from '../../dev/tools.js';
import { eventually } from './helpers.js';

const projectRoot = resolve(import.meta.dirname, '..', '..');

/** `npm start` running, its output gathered. */
interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every process descending from it, as seen so far. */
  seen: Set<number>;
  sandboxRoot: string;
}

const running: Started[] = [];

afterEach(async () => {
  // A failed test leaves nothing running: the npm process first, then whatever it started.
  for (const started of running.splice(0)) {
    if (started.child.exitCode === null) started.child.kill('SIGKILL');
    for (const pid of started.seen) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await rm(started.sandboxRoot, { recursive: true, force: true });
  }
});

/** The processes descending from `root`, from /proc. */
function descendants(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // Gone meanwhile.
    }
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of parents.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

async function npmStart(env: NodeJS.ProcessEnv): Promise<Started> {
  const sandboxRoot = await mkdtemp(join(tmpdir(), 'runboat-start-'));
  let output = '';
  const child = spawn('npm', ['start'], {
    cwd: projectRoot,
    env: { ...process.env, RUNBOAT_SANDBOX_DIR: sandboxRoot, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  const seen = new Set<number>();
  const watch = setInterval(() => {
    for (const pid of descendants(child.pid!)) seen.add(pid);
  }, 100);
  void exited.then(() => clearInterval(watch));
  const started: Started = { child, output: () => output, exited, seen, sandboxRoot };
  running.push(started);
  return started;
}

/** Waits until the output matches `pattern` (or the process ends). */
function waitForOutput(started: Started, pattern: RegExp, timeoutMs = 150_000) {
  return eventually(
    async () => {
      const match = pattern.exec(started.output());
      if (match) return match;
      if (started.child.exitCode !== null) {
        throw new Error(`npm start exited: ${started.output().slice(-3000)}`);
      }
      throw new Error(`no ${pattern} in the output yet:\n${started.output().slice(-2000)}`);
    },
    timeoutMs,
    200,
  );
}

/** The pids of the sandbox's servers: Temporal and every control plane component of kwok. */
async function sandboxPids(runDir: string): Promise<number[]> {
  const info = JSON.parse(await readFile(join(runDir, 'sandbox.json'), 'utf8')) as SandboxInfo;
  const pidDir = join(info.kube.workDir, 'clusters', info.kube.name, 'pids');
  const files = await readdir(pidDir);
  const kube = await Promise.all(
    files.map(async (file) => Number((await readFile(join(pidDir, file), 'utf8')).trim())),
  );
  return [info.temporal.pid, ...kube];
}

interface Poller {
  identity: string;
  last_access_time: string | null;
}

async function pollers(apiUrl: string): Promise<string[]> {
  const status = (await (await fetch(`${apiUrl}/api/v1/status`)).json()) as {
    workers: { queues: { role: string; pollers: Poller[] }[] };
  };
  return status.workers.queues.flatMap((queue) =>
    queue.pollers.map((poller) => `${queue.role}:${poller.identity}`),
  );
}

function occupy(port: number): Promise<Server> {
  return new Promise((resolveServer, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolveServer(server));
  });
}

describe('npm start', () => {
  it('restarts a worker killed with SIGKILL, and stops everything with the sandbox on SIGTERM', async () => {
    const started = await npmStart({ RUNBOAT_API_PORT: String(await freePort()) });
    await waitForOutput(started, /runboat is up/);
    // The lines after it may come in a later chunk of the pipe: wait for the one read here.
    const apiUrl = (await waitForOutput(started, /UI and API\s+(http:\S+)/))[1] ?? '';
    const output = started.output();
    const workerPid = Number(/\[start\] worker started \(pid (\d+)\)/.exec(output)?.[1]);
    const runDir = /run directory\s+(\S+)/.exec(output)?.[1] ?? '';
    expect(runDir.startsWith(started.sandboxRoot)).toBe(true);
    const servers = await sandboxPids(runDir);
    await eventually(async () =>
      expect(await pollers(apiUrl)).toContain(`builds:${workerPid}@${hostname()}`),
    );

    const killedAt = Date.now();
    process.kill(workerPid, 'SIGKILL');
    const crash = await waitForOutput(
      started,
      new RegExp(
        `worker \\(pid ${workerPid}\\) exited unasked \\(signal SIGKILL\\)[^\\n]*restarting it in[^\\n]*`,
      ),
    );
    const restarted = await waitForOutput(started, /\[start\] worker restarted \(pid (\d+)\)/);
    const newPid = Number(restarted[1]);
    const host = hostname();
    await eventually(async () => {
      const seen = await pollers(apiUrl);
      expect(seen).toContain(`builds:${newPid}@${host}`);
      expect(seen).toContain(`init:${newPid}@${host}`);
    }, 60_000);
    const restartMs = Date.now() - killedAt;

    const pids = [...new Set([...started.seen, ...servers])];
    const signalledAt = Date.now();
    started.child.kill('SIGTERM');
    const exit = await started.exited;
    const stopMs = Date.now() - signalledAt;
    await eventually(async () => expect(pids.filter(isAlive)).toEqual([]), 15_000);
    console.log(
      `npm start: ${crash[0]}; restarted as pid ${newPid}, polling again ${restartMs} ms after ` +
        `the kill; SIGTERM → exit ${exit.code ?? exit.signal} in ${stopMs} ms; ` +
        `${pids.length} processes seen (children and sandbox servers), none left`,
    );
    expect(started.output()).toMatch(/\[start\] worker \(pid \d+\) stopped \(exit code 0\)/);
    expect(started.output()).toMatch(/\[start\] api \(pid \d+\) stopped \(exit code 0\)/);
    expect(exit.code).toBe(0);
    expect(existsSync(runDir)).toBe(false);
    expect(await readdir(started.sandboxRoot)).toEqual([]);
  });

  it('stops with a message naming RUNBOAT_API_PORT when the port is busy, before or during the start, leaving nothing behind', async () => {
    // Busy before the start: nothing starts.
    const port = await freePort();
    const holder = await occupy(port);
    try {
      const before = await npmStart({ RUNBOAT_API_PORT: String(port) });
      const exit = await before.exited;
      expect(exit.code).not.toBe(0);
      expect(before.output()).toContain(`RUNBOAT_API_PORT=${port}`);
      expect([...before.seen].filter(isAlive)).toEqual([]);
      expect(await readdir(before.sandboxRoot)).toEqual([]);
    } finally {
      holder.close();
    }

    // Taken once the worker runs: the API cannot listen, and the worker and sandbox are stopped.
    const port2 = await freePort();
    const during = await npmStart({ RUNBOAT_API_PORT: String(port2) });
    await waitForOutput(during, /\[start\] worker started \(pid \d+\)/);
    const runDir = (await readdir(during.sandboxRoot)).map((d) => join(during.sandboxRoot, d))[0]!;
    const servers = await sandboxPids(runDir);
    const late = await occupy(port2);
    try {
      const exit = await during.exited;
      const pids = [...new Set([...during.seen, ...servers])];
      await eventually(async () => expect(pids.filter(isAlive)).toEqual([]), 15_000);
      console.log(
        `npm start with RUNBOAT_API_PORT taken during the start: exit ${exit.code}, ` +
          `"${/\[start\] RUNBOAT_API_PORT[^\n]*/.exec(during.output())?.[0]}"; ` +
          `${pids.length} processes started part-way, none left`,
      );
      expect(exit.code).not.toBe(0);
      expect(during.output()).toMatch(new RegExp(`\\[start\\] RUNBOAT_API_PORT=${port2}: `));
      expect(during.output()).toContain('stopping what was started');
      expect(await readdir(during.sandboxRoot)).toEqual([]);
    } finally {
      late.close();
    }
  });
});
