/**
 * What the benchmarks share: percentiles and summaries, instants first seen by a watch of the
 * benchmark's own process, the machine a report was measured on, the reports directory, and the
 * memory and CPU time of a process read from /proc, and build Deployments as the Python runboat
 * leaves them.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1Container, V1Deployment } from '@kubernetes/client-node';
import { annotations, BUILD_LABEL, CLEANUP_FINALIZER } from '../domain/build.js';

/** `bench/reports`, where every benchmark writes its report. */
export const reportsDir = join(dirname(fileURLToPath(import.meta.url)), 'reports');

/** The p-th percentile (nearest rank) of some values; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? NaN;
}

/** A distribution as the reports give it. */
export interface Summary {
  n: number;
  median: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
}

/** The summary of some values (all NaN but `n` when there are none). */
export function summary(values: readonly number[]): Summary {
  return {
    n: values.length,
    median: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    min: values.length ? Math.min(...values) : NaN,
    max: values.length ? Math.max(...values) : NaN,
  };
}

/** The median of some values (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** First time each key was seen satisfying a condition, by a watch of this process. */
export class FirstSeen {
  readonly at = new Map<string, number>();
  mark(key: string): void {
    if (!this.at.has(key)) this.at.set(key, performance.now());
  }
  async waitFor(key: string, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const seen = this.at.get(key);
      if (seen !== undefined) return seen;
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${key}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/**
 * Every instant at which a key's condition turned true (it may turn false and true again: a build
 * started, stopped and started), as seen by a watch of this process; waiters are woken at once.
 */
export class Transitions {
  private readonly times = new Map<string, number[]>();
  private readonly state = new Map<string, boolean>();
  private readonly waiters = new Set<() => void>();

  /** Records the condition's current value for a key. */
  set(key: string, value: boolean): void {
    if (value && !this.state.get(key)) {
      const list = this.times.get(key) ?? [];
      list.push(performance.now());
      this.times.set(key, list);
      for (const wake of this.waiters) wake();
    }
    this.state.set(key, value);
  }

  /** Whether the condition holds now for the key. */
  holds(key: string): boolean {
    return this.state.get(key) ?? false;
  }

  /** The first instant at or after `since` at which the condition turned true for the key. */
  firstSince(key: string, since: number): number | undefined {
    return this.times.get(key)?.find((t) => t >= since);
  }

  /** Waits for the condition to turn true at or after `since`; resolves with that instant. */
  waitFor(key: string, since: number, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const at = this.firstSince(key, since);
        if (at === undefined) return;
        done();
        resolve(at);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${key}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

/** The machine a benchmark ran on. */
export interface Machine {
  cpu: string;
  cores: number;
  ramGiB: number;
  node: string;
  platform: string;
}

/** Describes this machine. */
export function machine(): Machine {
  const list = cpus();
  return {
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
  };
}

/** One line naming the machine, for a report. */
export function describeMachine(m: Machine = machine()): string {
  return `${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.platform}, node ${m.node}`;
}

/** Writes `bench/reports/<name>.json` and `<name>.md`. */
export async function writeReport(name: string, json: unknown, markdown: string): Promise<void> {
  await mkdir(reportsDir, { recursive: true });
  await writeFile(join(reportsDir, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`);
  await writeFile(
    join(reportsDir, `${name}.md`),
    markdown.endsWith('\n') ? markdown : `${markdown}\n`,
  );
}

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second, the unit of CPU times in /proc/<pid>/stat. */
export function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    } catch {
      ticksPerSecond = 100;
    }
    if (!Number.isFinite(ticksPerSecond) || ticksPerSecond <= 0) ticksPerSecond = 100;
  }
  return ticksPerSecond;
}

/** A process's resident memory and CPU time so far, from /proc. */
export interface ProcessSample {
  rssMiB: number;
  /** User + system CPU time, in seconds. */
  cpuSeconds: number;
}

/** Reads a process's /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime, stime). */
export async function sampleProcess(pid: number): Promise<ProcessSample> {
  const [status, stat] = await Promise.all([
    readFile(`/proc/${pid}/status`, 'utf8'),
    readFile(`/proc/${pid}/stat`, 'utf8'),
  ]);
  const rssKiB = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMiB: rssKiB / 1024, cpuSeconds: ticks / clockTicks() };
}

/**
 * CPU time so far of each of a process's threads, summed by thread name (from
 * /proc/<pid>/task/<tid>/stat), in seconds: which part of a process is busy. Node leaves its
 * threads named `node`: the main thread (JavaScript) is told apart from the others (V8's helpers,
 * libuv's pool, worker threads); threads that name themselves (Temporal core's `tokio-runtime-w`)
 * keep their name.
 */
export async function sampleThreads(pid: number): Promise<Record<string, number>> {
  const byName: Record<string, number> = {};
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    if (!stat) continue;
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    // Node names none of its threads: the main thread (the one whose id is the process's) apart.
    const name = tid === String(pid) ? 'main thread' : `${comm} (other threads)`;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / clockTicks();
    byName[name] = (byName[name] ?? 0) + seconds;
  }
  return byName;
}

/** CPU time the whole machine has spent busy (every core, every user), from /proc/stat, in seconds. */
export async function machineBusySeconds(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [, ...ticks] = line.trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
  const busy = ticks.slice(0, 8).reduce((sum, t, i) => (i === 3 || i === 4 ? sum : sum + t), 0);
  return busy / clockTicks();
}

/** What a build Deployment written as the Python runboat leaves it says of its build. */
export interface LegacyBuild {
  name: string;
  repo: string;
  targetBranch: string;
  gitCommit: string;
  /** ISO time of the last scale; absent: never scaled. */
  lastScaled?: string;
  /** The Odoo container as the benchmark wants it (default: image only). */
  container?: V1Container;
}

/**
 * A build Deployment as the Python runboat leaves it after a successful init: stopped, its
 * commit in annotations, held by the cleanup finalizer, no status label (the adopter takes it).
 */
export function legacyDeployment(build: LegacyBuild): V1Deployment {
  const { name } = build;
  return {
    metadata: {
      name,
      labels: { [BUILD_LABEL]: name },
      annotations: {
        [annotations.repo]: build.repo,
        [annotations.targetBranch]: build.targetBranch,
        [annotations.pr]: '',
        [annotations.gitCommit]: build.gitCommit,
        [annotations.initStatus]: 'succeeded',
        ...(build.lastScaled ? { [annotations.lastScaled]: build.lastScaled } : {}),
      },
      finalizers: [CLEANUP_FINALIZER],
    },
    spec: {
      replicas: 0,
      selector: { matchLabels: { [BUILD_LABEL]: name } },
      template: {
        metadata: { labels: { [BUILD_LABEL]: name } },
        spec: {
          containers: [build.container ?? { name: 'odoo', image: 'ghcr.io/acme/odoo:16.0' }],
        },
      },
    },
  };
}

/**
 * The metrics URL a worker logged at its start (the last start, for a log a restarted worker
 * appended to), on loopback.
 */
export async function workerMetricsUrl(logFile: string): Promise<string> {
  const log = await readFile(logFile, 'utf8');
  const url = [...log.matchAll(/"metrics":"(http:[^"]+)"/g)].at(-1)?.[1];
  if (!url) throw new Error(`no metrics URL in ${logFile}`);
  return url.replace('0.0.0.0', '127.0.0.1');
}
