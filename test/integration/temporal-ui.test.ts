/**
 * The Temporal UI reads like the build page (docs/operations.md, "The Temporal UI"): a build
 * workflow carries a static summary (repo, branch, PR, short commit) and details, its current
 * details say its status (and why it failed), and its activities say what each step was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpdate, stopUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.failing, testRepos.acme] });
  await env.startWorker();
});

afterAll(async () => {
  await env?.close();
});

/** The text of a payload holding a JSON string (user metadata). */
function text(payload: { data?: Uint8Array | null } | null | undefined): string | undefined {
  return payload?.data ? (JSON.parse(Buffer.from(payload.data).toString()) as string) : undefined;
}

async function currentDetails(name: string): Promise<string> {
  const metadata = await env.client.workflow
    .getHandle(name)
    .query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  return metadata.currentDetails ?? '';
}

describe('a build workflow in the Temporal UI', () => {
  it('has a summary, details that follow its status, and a summary for each step', async () => {
    const commit = { ...env.commit('acme/shop', '16.0', 42), headRepo: 'mallory/shop' };
    const name = buildName(commit);
    const handle = await env.build(commit);
    await env.waitForStatus(name, 'stopped');

    const description = await handle.describe();
    expect(await description.staticSummary()).toBe(
      `acme/shop 16.0 · PR #42 · ${commit.gitCommit.slice(0, 12)}`,
    );
    expect(await description.staticDetails()).toContain('pull request [#42]');
    expect(await description.staticDetails()).toContain('from mallory/shop');
    await expect.poll(() => currentDetails(name)).toBe('**stopped**');

    await handle.executeUpdate(startUpdate);
    await env.waitForStatus(name, 'started');
    await handle.executeUpdate(stopUpdate);
    await env.waitForStatus(name, 'stopped');
    const history = await handle.fetchHistory();
    const scheduled = (history.events ?? []).map(
      (event) => event.activityTaskScheduledEventAttributes?.activityType?.name,
    );
    // The default kubefiles have no start or stop hook: known at resolution, no activity asks.
    expect(scheduled).not.toContain('applyHook');
    // A step is an activity or a local activity (its marker): the Temporal UI shows both.
    const steps = (history.events ?? [])
      .filter(
        (event) =>
          event.activityTaskScheduledEventAttributes ||
          event.markerRecordedEventAttributes?.markerName === 'core_local_activity',
      )
      .map((event) => text(event.userMetadata?.summary))
      .filter(Boolean);
    expect(steps).toEqual(
      expect.arrayContaining([
        'apply the deployment kubefiles',
        `init Job ${name}-init-1`,
        'wait for a ready pod',
      ]),
    );
  });

  it('says why a failed build failed in its current details', async () => {
    const commit = env.commit('acme/broken', 'main');
    const name = buildName(commit);
    await env.build(commit);
    await env.waitForStatus(name, 'failed');
    await expect
      .poll(() => currentDetails(name))
      .toMatch(/^\*\*failed\*\*: .*BackoffLimitExceeded/);
  });
});
