/**
 * The polling trigger against the real Temporal and Kubernetes and the fake GitHub, with no webhook
 * at all: a repo of 500 branches and 200 open pull requests is polled by its Temporal Schedule; a
 * new branch gets its build, a closed pull request's builds are undeployed, and a poll when nothing
 * changed costs only 304 answers, one per page.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import type { PollResult } from '../../activities/poll.js';
import { pollScheduleId } from '../../worker/poll-schedules.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const REPO = 'acme/polled';
const POLL_SECONDS = 2;
const sha = () => randomBytes(20).toString('hex');

let env: BuildEnv;
const branches = new Map<string, string>();

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      { repo: REPO, branch: '^(main|feature-.*)$', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
    ],
  });
  // 500 branches, of which the repos file matches main and feature-1..3; 200 open pull
  // requests, of which 2 target main (the others target a branch nobody builds).
  branches.set('main', sha());
  for (let i = 1; i <= 3; i++) branches.set(`feature-${i}`, sha());
  for (let i = branches.size; i < 500; i++) branches.set(`topic-${i}`, sha());
  env.github.heads.set(REPO, branches);
  const pulls = new Map<number, { base: string; sha: string }>();
  for (let n = 1; n <= 200; n++) pulls.set(n, { base: n <= 2 ? 'main' : 'legacy', sha: sha() });
  env.github.pulls.set(REPO, pulls);
  await env.startWorker({ RUNBOAT_GITHUB_POLL_SECONDS: String(POLL_SECONDS) });
});

afterAll(async () => {
  await env?.close();
});

const branchCommit = (branch: string) => ({
  repo: REPO,
  targetBranch: branch,
  pr: null,
  gitCommit: branches.get(branch) ?? '',
});

const pullCommit = (pr: number) => ({
  repo: REPO,
  targetBranch: 'main',
  pr,
  gitCommit: env.github.pulls.get(REPO)?.get(pr)?.sha ?? '',
  headRepo: REPO,
});

describe('polling without webhooks', () => {
  it('builds every matched head of the repo at start, and nothing else', async () => {
    const expected = [
      ...['main', 'feature-1', 'feature-2', 'feature-3'].map((b) => buildName(branchCommit(b))),
      ...[1, 2].map((pr) => buildName(pullCommit(pr))),
    ];
    await eventually(
      async () => {
        for (const name of expected) expect(await env.deployment(name)).toBeDefined();
      },
      60_000,
      250,
    );
    const schedule = await env.client.schedule
      .getHandle(pollScheduleId(env.temporal.buildsTaskQueue, REPO))
      .describe();
    expect(schedule.spec.intervals?.[0]?.every).toBe(POLL_SECONDS * 1000);
    const list = await env.kube.apps.listNamespacedDeployment({ namespace: env.namespace });
    expect(list.items.map((d) => d.metadata?.name).sort()).toEqual(expected.sort());
  });

  it('builds a new branch with no webhook', async () => {
    const since = Date.now();
    branches.set('feature-new', sha());
    const name = buildName(branchCommit('feature-new'));
    await eventually(async () => expect(await env.deployment(name)).toBeDefined(), 60_000, 100);
    const ms = Date.now() - since;
    console.log(`missed delivery: the new branch's build existed ${ms} ms after the push`);
    expect(ms).toBeLessThan(POLL_SECONDS * 1000 * 3 + 5_000);
    await env.waitForStatus(name, 'stopped');
  });

  it("undeploys a closed pull request's builds", async () => {
    const name = buildName(pullCommit(2));
    await env.waitForStatus(name, 'stopped');
    env.github.pulls.get(REPO)?.delete(2);
    await eventually(async () => expect(await env.deployment(name)).toBeUndefined(), 90_000, 250);
    // The other pull request's build is untouched.
    expect(await env.deployment(buildName(pullCommit(1)))).toBeDefined();
  });

  it('asks only 304s when nothing changed: one per page, no rate limit spent', async () => {
    // Settle: a poll after the last change has read every page anew.
    await new Promise((resolve) => setTimeout(resolve, POLL_SECONDS * 1000 * 2));
    const used = env.github.rateLimitUsed();
    const from = env.github.requests.length;
    await new Promise((resolve) => setTimeout(resolve, POLL_SECONDS * 1000 * 4));
    const window = env.github.requests
      .slice(from)
      .filter((r) => r.path.startsWith(`/repos/${REPO}/`));
    // One poll's requests come within milliseconds, polls seconds apart: split at the gaps and
    // leave out the first and last groups, which the window may have cut.
    const groups: (typeof window)[] = [];
    for (const request of window) {
      const last = groups.at(-1);
      const previous = last?.at(-1);
      if (last && previous && request.at - previous.at < 500) last.push(request);
      else groups.push([request]);
    }
    const polls = groups.slice(1, -1);
    const statuses = new Set(window.map((r) => r.status));
    console.log(
      `nothing changed: ${polls.length} whole polls of ${polls.map((g) => g.length).join(', ')} ` +
        `requests, statuses ${[...statuses].join(',')}`,
    );
    expect(polls.length).toBeGreaterThanOrEqual(2);
    expect([...statuses]).toEqual([304]);
    console.log(`one quiet poll: ${polls[0]?.map((r) => r.path).join(' ')}`);
    // At most one request per page: no page asked twice in a poll.
    for (const poll of polls) expect(new Set(poll.map((r) => r.path)).size).toBe(poll.length);
    // 501 branches in 6 pages of 100, 199 pull requests in 2.
    for (const poll of polls) expect(poll).toHaveLength(8);
    expect(env.github.rateLimitUsed()).toBe(used);

    // What each poll took, as its workflow returned it.
    const results: PollResult[] = [];
    for await (const run of env.client.workflow.list({
      query: `WorkflowType = 'pollRepoWorkflow' AND TaskQueue = '${env.temporal.buildsTaskQueue}' AND ExecutionStatus = 'Completed'`,
    })) {
      results.push(
        (await env.client.workflow.getHandle(run.workflowId, run.runId).result()) as PollResult,
      );
    }
    const quiet = results.filter((r) => r.started.length === 0 && r.undeployed.length === 0);
    const times = quiet.map((r) => r.ms).sort((a, b) => a - b);
    console.log(
      `quiet polls: ${times.length}, ms per poll median ${times[Math.floor(times.length / 2)]}, max ${times.at(-1)}`,
    );
    expect(quiet.length).toBeGreaterThan(0);
    // 501 branches (one new) and 199 open pull requests (one closed) by now; matched: main,
    // feature-1..3, feature-new and pull request 1.
    expect(quiet[0]).toMatchObject({ branches: 501, pullRequests: 199, heads: 6 });
  });
});
