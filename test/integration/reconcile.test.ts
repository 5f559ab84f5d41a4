/**
 * When GitHub is not there as expected, against the real Temporal and Kubernetes and the fake
 * GitHub: a poll that meets a rate limit longer than the client waits fails, asks GitHub nothing
 * more until the limit lifts, and a later poll builds the new branch; with webhooks, a push and a
 * branch deletion made while the API is down (no delivery ever arrives) are caught by the
 * reconciliation, which builds the one and undeploys the other.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import { pollScheduleId } from '../../worker/poll-schedules.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const sha = () => randomBytes(20).toString('hex');
const branchCommit = (repo: string, branch: string, gitCommit: string) => ({
  repo,
  targetBranch: branch,
  pr: null,
  gitCommit,
});

/** Runs of the poll workflow of a task queue that ended with this status. */
async function pollRuns(env: BuildEnv, status: 'Completed' | 'Failed'): Promise<number> {
  let count = 0;
  for await (const _run of env.client.workflow.list({
    query: `WorkflowType = 'pollRepoWorkflow' AND TaskQueue = '${env.temporal.buildsTaskQueue}' AND ExecutionStatus = '${status}'`,
  })) {
    count++;
  }
  return count;
}

describe('a rate-limited poll that recovers', () => {
  const REPO = 'acme/limited';
  const POLL_SECONDS = 2;
  // Longer than the 60 s the client sits out before asking again: the call fails instead.
  const LIMIT_SECONDS = 70;
  let env: BuildEnv;
  const branches = new Map<string, string>();

  beforeAll(async () => {
    env = await createBuildEnv({
      repos: [
        {
          repo: REPO,
          branch: '^(main|feature-.*)$',
          builds: [{ image: 'ghcr.io/acme/odoo:16.0' }],
        },
      ],
    });
    branches.set('main', sha());
    env.github.heads.set(REPO, branches);
    env.github.pulls.set(REPO, new Map());
    await env.startWorker({ RUNBOAT_GITHUB_POLL_SECONDS: String(POLL_SECONDS) });
  });

  afterAll(async () => {
    await env?.close();
  });

  it('fails while GitHub says to wait, asks nothing meanwhile, then builds the new branch', async () => {
    const main = buildName(branchCommit(REPO, 'main', branches.get('main') ?? ''));
    await env.waitForStatus(main, 'stopped');
    // Quiet: the build's commit statuses are posted, polls answer 304.
    await new Promise((resolve) => setTimeout(resolve, POLL_SECONDS * 1000 * 2));
    const failedBefore = await pollRuns(env, 'Failed');

    // The next request meets a primary limit (403, none remaining) that resets in 70 s.
    const from = env.github.requests.length;
    env.github.rateLimits.push({ kind: 'primary', seconds: LIMIT_SECONDS });
    const pushed = Date.now();
    branches.set('feature-new', sha());
    const name = buildName(branchCommit(REPO, 'feature-new', branches.get('feature-new') ?? ''));

    const limited = await eventually(
      async () => {
        const found = env.github.requests.slice(from).find((r) => r.status === 403);
        if (!found) throw new Error('no request met the rate limit yet');
        return Promise.resolve(found);
      },
      POLL_SECONDS * 1000 * 3 + 5_000,
      100,
    );
    const limitedAt = limited.at;
    const resetAt = limitedAt + LIMIT_SECONDS * 1000;
    console.log(`rate limit met ${limitedAt - pushed} ms after the push: ${limited.path}`);

    // The failed polls are what the operator sees in Temporal; no build meanwhile.
    await eventually(
      async () => expect(await pollRuns(env, 'Failed')).toBeGreaterThan(failedBefore),
      30_000,
      500,
    );
    expect(await env.deployment(name)).toBeUndefined();

    await eventually(
      async () => expect(await env.deployment(name)).toBeDefined(),
      (LIMIT_SECONDS + 60) * 1000,
      250,
    );
    const built = Date.now();
    const failed = (await pollRuns(env, 'Failed')) - failedBefore;
    console.log(
      `rate-limited poll: build existed ${built - pushed} ms after the push, ` +
        `${built - resetAt} ms after the limit's reset; ${failed} polls failed meanwhile`,
    );
    // Not built before GitHub's reset, and soon after it.
    expect(built).toBeGreaterThanOrEqual(resetAt - 1000);
    expect(built - resetAt).toBeLessThan(POLL_SECONDS * 1000 * 3 + 10_000);

    // Nothing asked of GitHub between the limit's answer and its reset: the requests that were
    // already under way when it came (the same poll's other listing) answer within a moment.
    const meanwhile = env.github.requests
      .slice(from)
      .filter((r) => r.at > limitedAt + 1000 && r.at < resetAt - 1000);
    console.log(
      `requests while GitHub said to wait: ${meanwhile.length}` +
        (meanwhile.length ? ` (${meanwhile.map((r) => `${r.status} ${r.path}`).join(', ')})` : ''),
    );
    expect(meanwhile).toEqual([]);
    await env.waitForStatus(name, 'stopped');
  });
});

describe('a webhook outage filled by the reconciliation', () => {
  const REPO = 'acme/reconciled';
  const RECONCILE_SECONDS = 2;
  const SECRET = 'reconcile-test-secret';
  let env: BuildEnv;
  let api: (WorkerProcess & { url: string }) | undefined;
  const branches = new Map<string, string>();

  beforeAll(async () => {
    env = await createBuildEnv({
      repos: [{ repo: REPO, branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] }],
    });
    branches.set('main', sha());
    env.github.heads.set(REPO, branches);
    env.github.pulls.set(REPO, new Map());
    await env.startWorker({
      RUNBOAT_GITHUB_POLL_SECONDS: '0',
      RUNBOAT_GITHUB_RECONCILE_SECONDS: String(RECONCILE_SECONDS),
    });
    api = await spawnApi(
      { ...env.workerEnv, RUNBOAT_API_PORT: '0', RUNBOAT_WEBHOOK_SECRET: SECRET },
      join(await mkdtemp(join(tmpdir(), 'runboat-reconcile-')), 'api.log'),
    );
  });

  afterAll(async () => {
    await api?.stop();
    await env?.close();
  });

  it('builds a branch pushed while the API was down, and undeploys one deleted meanwhile', async () => {
    // The reconciliation's schedule, not the polling trigger's interval.
    const schedule = await env.client.schedule
      .getHandle(pollScheduleId(env.temporal.buildsTaskQueue, REPO))
      .describe();
    expect(schedule.spec.intervals?.[0]?.every).toBe(RECONCILE_SECONDS * 1000);

    // Webhooks work: a push delivered while the API is up builds its branch.
    branches.set('feature-hooked', sha());
    const hooked = buildName(
      branchCommit(REPO, 'feature-hooked', branches.get('feature-hooked') ?? ''),
    );
    const answer = await deliver(
      `${api?.url}/webhooks/github`,
      'push',
      pushPayload({
        repo: 'Acme/Reconciled',
        branch: 'feature-hooked',
        after: branches.get('feature-hooked'),
      }),
      SECRET,
    );
    expect(answer).toEqual({ status: 202, body: { build: hooked } });
    await env.waitForStatus(hooked, 'stopped');

    // The API goes down: GitHub's deliveries find nobody, and none is ever made again.
    await api?.stop();
    api = undefined;

    const pushed = Date.now();
    branches.set('feature-missed', sha());
    const missed = buildName(
      branchCommit(REPO, 'feature-missed', branches.get('feature-missed') ?? ''),
    );
    await eventually(async () => expect(await env.deployment(missed)).toBeDefined(), 60_000, 100);
    const builtMs = Date.now() - pushed;
    console.log(`webhook outage: the pushed branch's build existed ${builtMs} ms after the push`);
    expect(builtMs).toBeLessThan(RECONCILE_SECONDS * 1000 * 3 + 10_000);
    await env.waitForStatus(missed, 'stopped');

    const deleted = Date.now();
    branches.delete('feature-hooked');
    await eventually(async () => expect(await env.deployment(hooked)).toBeUndefined(), 90_000, 250);
    const goneMs = Date.now() - deleted;
    console.log(
      `webhook outage: the deleted branch's build was gone ${goneMs} ms after the deletion`,
    );
    // The others stay.
    expect(await env.deployment(missed)).toBeDefined();
    expect(
      await env.deployment(buildName(branchCommit(REPO, 'main', branches.get('main') ?? ''))),
    ).toBeDefined();
    expect(await pollRuns(env, 'Completed')).toBeGreaterThan(0);
  });
});
