/**
 * GitHub failing cannot stall the fleet: while the fake GitHub answers 404 (a renamed repo), then
 * 500 (GitHub down) for one sticky repo's branches, MAX_STARTED is crossed and the excess build is
 * stopped as fast as usual; the other sticky repo still gets its head built; the error is logged
 * once per sticky cycle (not once per request); once GitHub heals, the next cycle builds the head.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_LABEL, type CommitInfo } from '../../domain/build.js';
import { startUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { createBuildEnv, type BuildEnv, type WorkerProcess } from './build-env.js';
import { eventually } from './helpers.js';

const STICKY_SECONDS = 2;
/** What the fleet takes to stop an excess build when nothing fails (fleet.test.ts: ~1 s). */
const USUAL_LATENCY_MS = 5_000;

let env: BuildEnv;
let worker: WorkerProcess;
const sha = () => randomBytes(20).toString('hex');

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/shop',
        branch: 'main',
        sticky: true,
        builds: [{ image: 'ghcr.io/acme/odoo:16.0' }],
      },
      {
        repo: 'acme/tools',
        branch: 'main',
        sticky: true,
        builds: [{ image: 'ghcr.io/acme/odoo:16.0' }],
      },
      { repo: 'acme/.*', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
    ],
  });
  env.github.heads.set('acme/shop', new Map([['main', sha()]]));
  env.github.heads.set('acme/tools', new Map([['main', sha()]]));
  // A renamed (or unreachable) repo from the start: GitHub says 404 for its branches.
  env.github.branchErrors.set('acme/shop', 404);
  worker = await env.startWorker({
    RUNBOAT_MAX_STARTED: '1',
    RUNBOAT_STICKY_INTERVAL_SECONDS: String(STICKY_SECONDS),
  });
});

afterAll(async () => {
  await env?.close();
});

async function started(): Promise<string[]> {
  const list = await env.kube.apps.listNamespacedDeployment({
    namespace: env.namespace,
    labelSelector: BUILD_LABEL,
  });
  return list.items
    .filter((d) => !d.metadata?.deletionTimestamp && (d.spec?.replicas ?? 0) > 0)
    .map((d) => d.metadata?.name ?? '');
}

/** Starts `next` while `running` is the one started build; returns the ms until `running` stopped. */
async function crossLimit(running: CommitInfo, next: CommitInfo): Promise<number> {
  await env.client.workflow.getHandle(buildName(next)).executeUpdate(startUpdate);
  const crossed = Date.now();
  await eventually(async () => expect(await started()).toEqual([buildName(next)]), 60_000, 100);
  const latency = Date.now() - crossed;
  expect(await started()).not.toContain(buildName(running));
  return latency;
}

interface LogLine {
  msg?: string;
  repo?: string;
  status?: number;
  attempts?: number;
  [key: string]: unknown;
}

async function logLines(): Promise<{ text: string; line: LogLine }[]> {
  const text = await readFile(worker.logFile, 'utf8');
  return text
    .split('\n')
    .filter((row) => row.startsWith('{'))
    .map((row) => ({ text: row, line: JSON.parse(row) as LogLine }));
}

describe('sticky branches while GitHub fails', () => {
  it('never delay MAX_STARTED, and the error is logged once per cycle', async () => {
    const commits = ['a', 'b', 'c'].map((x) => env.commit('acme/shop', `feature-${x}`));
    for (const commit of commits) await env.build(commit);
    for (const commit of commits) await env.waitForStatus(buildName(commit), 'stopped');
    const [a, b, c] = commits as [CommitInfo, CommitInfo, CommitInfo];

    await env.client.workflow.getHandle(buildName(a)).executeUpdate(startUpdate);
    await env.waitForStatus(buildName(a), 'started');
    const during404 = await crossLimit(a, b);
    console.log(`GitHub 404: MAX_STARTED restored ${during404} ms after the limit was crossed`);
    expect(during404).toBeLessThan(USUAL_LATENCY_MS);

    const since500 = Date.now();
    env.github.branchErrors.set('acme/shop', 500);
    // Let a 500 cycle begin, so the limit is crossed while GitHub is down.
    await eventually(async () => {
      expect(env.github.branchRequests.some((r) => r.error === 500)).toBe(true);
    });
    const during500 = await crossLimit(b, c);
    console.log(`GitHub 500: MAX_STARTED restored ${during500} ms after the limit was crossed`);
    expect(during500).toBeLessThan(USUAL_LATENCY_MS);

    // One failing repo stops no other: the healthy sticky repo got its head built.
    const tools = {
      repo: 'acme/tools',
      targetBranch: 'main',
      pr: null,
      gitCommit: env.github.heads.get('acme/tools')?.get('main') ?? '',
    };
    await env.waitForStatus(buildName(tools), 'stopped');

    // A few full 500 cycles, then read what the worker logged.
    await eventually(
      async () => {
        const lines = await logLines();
        const failed = lines.filter((l) => l.line.repo === 'acme/shop' && l.line.status === 500);
        expect(failed.length).toBeGreaterThanOrEqual(3);
      },
      60_000,
      500,
    );
    const elapsed500 = Date.now() - since500;
    const requests = env.github.branchRequests.filter((r) => r.repo === 'acme/shop');
    const lines = await logLines();
    // Whatever logged it (activity, workflow, SDK), every warning or error about the failing
    // listing counts (an info line naming the repo, such as its poll schedule's, does not).
    const errorLines = lines.filter(
      (l) =>
        ((l.line as { level?: number }).level ?? 0) >= 40 &&
        (l.text.includes('/repos/acme/shop/branches') || l.line.repo === 'acme/shop'),
    );
    const byStatus = (status: number) => errorLines.filter((l) => l.line.status === status);
    const lines404 = byStatus(404);
    const lines500 = byStatus(500);
    const requests404 = requests.filter((r) => r.error === 404).length;
    const requests500 = requests.filter((r) => r.error === 500).length;
    console.log(
      `GitHub 404: ${requests404} requests, ${lines404.length} log lines; ` +
        `500: ${requests500} requests, ${lines500.length} log lines in ${elapsed500} ms ` +
        `(sticky interval ${STICKY_SECONDS} s)`,
    );
    expect(errorLines.length).toBe(lines404.length + lines500.length);
    expect(lines404.length).toBeGreaterThanOrEqual(1);
    for (const { line } of [...lines404, ...lines500]) {
      expect(line.msg).toBe('sticky branches not listed');
    }
    // A 404 is not retried within a cycle: one request, one line.
    expect(lines404.every((l) => l.line.attempts === 1)).toBe(true);
    expect(requests404).toBe(lines404.length);
    // A 500 is retried a few times within a cycle, yet logged once for all of them.
    expect(lines500.every((l) => (l.line.attempts ?? 0) > 1)).toBe(true);
    const attempts500 = lines500.reduce((sum, l) => sum + (l.line.attempts ?? 0), 0);
    expect(requests500).toBeGreaterThanOrEqual(attempts500);
    expect(requests500 - attempts500).toBeLessThanOrEqual(lines500[0]?.line.attempts ?? 0);
    expect(lines500.length).toBeLessThanOrEqual(elapsed500 / (STICKY_SECONDS * 1000) + 1);

    // GitHub heals: the next cycle builds the head it could not read.
    env.github.branchErrors.delete('acme/shop');
    const shop = {
      repo: 'acme/shop',
      targetBranch: 'main',
      pr: null,
      gitCommit: env.github.heads.get('acme/shop')?.get('main') ?? '',
    };
    await env.waitForStatus(buildName(shop), 'stopped');
  });
});
