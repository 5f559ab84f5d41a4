/**
 * The build index's builds that are not deployed yet (`queued`), fed by a source standing in for
 * Temporal's visibility store; the informer is never started (the integration test no-worker
 * covers the Deployment taking over).
 */
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it, vi } from 'vitest';
import { BuildIndex, QUEUED_LIST_SHARE, repeatSpaced } from '../../api/build-index.js';
import type { QueuedBuild, QueuedBuildSource } from '../../api/queued-builds.js';
import type { BuildView } from '../../domain/build-view.js';
import { buildName } from '../../domain/names.js';
import { ClientError } from '../../lib/errors.js';
import type { KubeClients } from '../../lib/kube.js';
import { createLogger } from '../../lib/logger.js';

function queued(seed: string, pr: number | null = null): QueuedBuild {
  const commit = {
    repo: 'acme/shop',
    targetBranch: 'main',
    pr,
    gitCommit: seed.padEnd(40, '0'),
  };
  return {
    name: buildName(commit),
    status: 'queued',
    commit,
    created: `2026-01-0${seed.length}T10:00:00.000Z`,
  };
}

/** A source whose list and lookups the test sets; `down` makes Temporal unreachable. */
function source() {
  const state = {
    listed: [] as QueuedBuild[],
    byName: new Map<string, QueuedBuild>(),
    down: false,
  };
  const impl: QueuedBuildSource = {
    list: () =>
      state.down ? Promise.reject(new Error('unavailable')) : Promise.resolve(state.listed),
    find: (name) =>
      state.down
        ? Promise.reject(new Error('unavailable'))
        : Promise.resolve(state.byName.get(name)),
  };
  return { state, impl };
}

function indexWith(queuedSource: QueuedBuildSource) {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'none', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'none' }],
    contexts: [{ name: 'none', cluster: 'none', user: 'none' }],
    currentContext: 'none',
  });
  const kube = { config, apps: config.makeApiClient(AppsV1Api) } as unknown as KubeClients;
  const index = new BuildIndex(kube, 'builds', 'runboat.test', createLogger('silent'), {
    queued: queuedSource,
  });
  const events: string[] = [];
  index.on('upd', (b: BuildView) => events.push(`upd ${b.name} ${b.status}`));
  index.on('del', (b: BuildView) => events.push(`del ${b.name}`));
  return { index, events };
}

describe('queued builds in the build index', () => {
  it('lists them with their commit, streams their arrival and departure', async () => {
    const { state, impl } = source();
    const { index, events } = indexWith(impl);
    const a = queued('a', 12);
    const b = queued('bb');
    state.listed = [a, b];
    await index.refreshQueued();
    expect(index.all().map((v) => v.name)).toEqual([b.name, a.name]);
    expect(index.all({ pr: 12 })).toEqual([
      expect.objectContaining({
        name: a.name,
        status: 'queued',
        init_status: 'todo',
        commit_info: {
          repo: 'acme/shop',
          target_branch: 'main',
          pr: 12,
          git_commit: a.commit.gitCommit,
          message: null,
          author: null,
        },
        repo_pr_link: 'https://github.com/acme/shop/pull/12',
        created: a.created,
      }),
    ]);
    // Deployed builds only: what the writers (bulk undeploy, webhook undeploys) act on.
    expect(index.list()).toEqual([]);
    expect(index.get(a.name)).toBeUndefined();

    await index.refreshQueued();
    state.listed = [b];
    await index.refreshQueued();
    expect(events).toEqual([`upd ${a.name} queued`, `upd ${b.name} queued`, `del ${a.name}`]);
    expect(index.all({ status: 'queued' }).map((v) => v.name)).toEqual([b.name]);
  });

  it('finds a build accepted since the last list by its name, and keeps it while visibility catches up', async () => {
    const { state, impl } = source();
    const { index, events } = indexWith(impl);
    const c = queued('ccc');
    state.byName.set(c.name, c);
    expect((await index.find(c.name))?.status).toBe('queued');
    expect(await index.find('bunknown')).toBeUndefined();
    await index.refreshQueued();
    expect(index.all().map((v) => v.name)).toEqual([c.name]);
    expect(events).toEqual([`upd ${c.name} queued`]);
  });

  it('keeps what it knew while Temporal does not answer, and says so for a lookup', async () => {
    const { state, impl } = source();
    const { index } = indexWith(impl);
    const d = queued('dddd');
    state.listed = [d];
    await index.refreshQueued();
    state.down = true;
    await index.refreshQueued();
    expect(index.all().map((v) => v.name)).toEqual([d.name]);
    expect((await index.find(d.name))?.name).toBe(d.name);
    const error = await index.find('bother').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ClientError);
    expect((error as ClientError).status).toBe(503);
  });
});

describe('repeatSpaced (the queued builds list)', () => {
  it('waits the interval after a quick run, and share × its time after a slow one', async () => {
    const runs: { began: number; ended: number }[] = [];
    let slow = false;
    const loop = await repeatSpaced(
      async () => {
        const began = Date.now();
        await new Promise((resolve) => setTimeout(resolve, slow ? 40 : 0));
        runs.push({ began, ended: Date.now() });
      },
      50,
      QUEUED_LIST_SHARE,
    );
    try {
      await vi.waitFor(() => expect(runs.length).toBeGreaterThanOrEqual(3), { timeout: 2000 });
      slow = true;
      const before = runs.length;
      await vi.waitFor(() => expect(runs.length).toBeGreaterThanOrEqual(before + 2), {
        timeout: 5000,
      });
    } finally {
      loop.stop();
    }
    const gaps = runs.slice(1).map((run, i) => ({
      gap: run.began - (runs[i]?.ended ?? 0),
      took: (runs[i]?.ended ?? 0) - (runs[i]?.began ?? 0),
    }));
    const quick = gaps.filter((g) => g.took < 20);
    const slowGaps = gaps.filter((g) => g.took >= 35);
    expect(quick.length).toBeGreaterThan(0);
    for (const g of quick) expect(g.gap).toBeGreaterThanOrEqual(45);
    // 40 ms lists: at least 20 × 40 ms = 800 ms between two.
    expect(slowGaps.length).toBeGreaterThan(0);
    for (const g of slowGaps) expect(g.gap).toBeGreaterThanOrEqual(g.took * QUEUED_LIST_SHARE - 5);
  });
});
