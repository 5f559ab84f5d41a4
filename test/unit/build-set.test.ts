/**
 * The build index's store (api/build-set.ts): its lookups by repo and branch and its cached order
 * answer what a pass over every build would, through additions, changes and removals.
 */
import { describe, expect, it } from 'vitest';
import {
  BuildSet,
  matches,
  mergeNewestFirst,
  newestFirst,
  type BuildFilter,
} from '../../api/build-set.js';
import type { BuildStatus } from '../../domain/build.js';
import type { BuildView } from '../../domain/build-view.js';
import { viewOf } from './app-fixture.js';

/** A small deterministic generator: the same builds on every run. */
function random(seed: number) {
  let state = seed;
  return (n: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return Math.floor(state / 256) % n;
  };
}

const statuses: BuildStatus[] = ['stopped', 'started', 'failed', 'initializing'];

function buildOf(pick: (n: number) => number, i: number): BuildView {
  const pr = pick(4) === 0 ? 1 + pick(5) : null;
  return viewOf({
    sha: i.toString(16).padStart(6, '0'),
    repo: `acme/repo-${pick(4)}`,
    branch: ['main', '16.0', 'feature/x', 'Main'][pick(4)],
    pr,
    status: statuses[pick(statuses.length)],
    // Some builds share their creation time: the name decides between them.
    created: new Date(Date.UTC(2026, 0, 1, 0, pick(50))).toISOString(),
  });
}

/** What the index answered before it had lookups: every build filtered, then sorted. */
function byPass(builds: Iterable<BuildView>, filter: BuildFilter): string[] {
  const repo = filter.repo?.toLowerCase();
  return [...builds]
    .filter((b) => matches(b, filter, repo))
    .sort(
      (a, b) => (b.created ?? '').localeCompare(a.created ?? '') || a.name.localeCompare(b.name),
    )
    .map((b) => b.name);
}

const filters: BuildFilter[] = [
  {},
  { repo: 'acme/repo-1' },
  { repo: 'ACME/Repo-2' },
  { repo: 'acme/repo-1', targetBranch: 'main' },
  { repo: 'acme/repo-3', branch: 'feature/x' },
  { repo: 'acme/repo-0', targetBranch: 'main', branch: '16.0' },
  { repo: 'acme/repo-2', targetBranch: 'Main', status: 'failed' },
  { repo: 'acme/repo-0', pr: 3 },
  { targetBranch: '16.0' },
  { pr: 2 },
  { status: 'started' },
  { repo: 'acme/none' },
];

describe('the build set', () => {
  it('answers every filter and count as a pass over every build would, through changes and removals', () => {
    const pick = random(7);
    const set = new BuildSet();
    const reference = new Map<string, BuildView>();
    const check = () => {
      expect(set.size).toBe(reference.size);
      const counts = new Map<BuildStatus, number>();
      for (const b of reference.values()) counts.set(b.status, (counts.get(b.status) ?? 0) + 1);
      expect(new Map(set.counts())).toEqual(counts);
      expect(set.newestFirst().map((b) => b.name)).toEqual(byPass(reference.values(), {}));
      for (const filter of filters) {
        const names = set
          .select(filter)
          .sort(newestFirst)
          .map((b) => b.name);
        expect(names, JSON.stringify(filter)).toEqual(byPass(reference.values(), filter));
      }
    };
    const builds = Array.from({ length: 400 }, (_, i) => buildOf(pick, i));
    // As the index's first list puts them: in no order, sorted at the next read.
    set.deferOrder();
    for (const build of builds) {
      set.set(build);
      reference.set(build.name, build);
    }
    check();
    expect(set.select({ repo: 'acme/repo-1', targetBranch: 'main' }).length).toBeGreaterThan(5);

    // Status changes, a build moved to another branch, removals (some twice), re-additions.
    for (let round = 0; round < 300; round++) {
      const build = builds[pick(builds.length)]!;
      const action = pick(4);
      if (action === 0) {
        expect(set.delete(build.name)?.name).toBe(reference.get(build.name)?.name);
        reference.delete(build.name);
      } else {
        const changed: BuildView = {
          ...build,
          status: statuses[pick(statuses.length)]!,
          commit_info:
            action === 1
              ? { ...build.commit_info, target_branch: 'moved', repo: 'acme/repo-9' }
              : build.commit_info,
        };
        set.set(changed);
        reference.set(changed.name, changed);
      }
      if (round % 50 === 0) check();
      // Some rounds change builds in no order, as the first list of the index does.
      if (round % 100 === 25) set.deferOrder();
    }
    check();
    expect(set.select({ name: builds[0]!.name }).length).toBe(
      reference.has(builds[0]!.name) ? 1 : 0,
    );
    expect(set.select({ repo: 'acme/repo-9', targetBranch: 'main' })).toEqual([]);
  });

  it('moves a build whose creation time changed, and merges two sets in order', () => {
    const set = new BuildSet();
    const old = viewOf({ sha: 'a1', created: '2026-01-01T00:00:00.000Z' });
    const recent = viewOf({ sha: 'b2', created: '2026-02-01T00:00:00.000Z' });
    set.set(old);
    set.set(recent);
    expect(set.newestFirst().map((b) => b.name)).toEqual([recent.name, old.name]);
    set.set({ ...old, created: '2026-03-01T00:00:00.000Z' });
    expect(set.newestFirst().map((b) => b.name)).toEqual([old.name, recent.name]);
    set.set({ ...old, created: null });
    expect(set.newestFirst().map((b) => b.name)).toEqual([recent.name, old.name]);
    set.delete(old.name);
    expect(set.newestFirst().map((b) => b.name)).toEqual([recent.name]);

    const pick = random(11);
    const deployed = new BuildSet();
    const queued = new BuildSet();
    const every: BuildView[] = [];
    for (let i = 0; i < 200; i++) {
      const build = buildOf(pick, i);
      (pick(3) === 0 ? queued : deployed).set(build);
      every.push(build);
    }
    const merged = mergeNewestFirst(deployed.newestFirst(), queued.newestFirst());
    expect(merged.map((b) => b.name)).toEqual(byPass(every, {}));
    expect(mergeNewestFirst(deployed.newestFirst(), [])).not.toBe(deployed.newestFirst());
  });
});
