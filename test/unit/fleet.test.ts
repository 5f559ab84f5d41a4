import { describe, expect, it } from 'vitest';
import type { BuildStatus } from '../../domain/build.js';
import { planEvictions, withChanges, type FleetMember } from '../../domain/fleet.js';

const build = (name: string, status: BuildStatus, minute: number, sticky = false): FleetMember => ({
  name,
  status,
  lastScaled: `2026-11-22T10:${String(minute).padStart(2, '0')}:00Z`,
  sticky,
});

describe('planEvictions', () => {
  it('does nothing within the limits', () => {
    const builds = [build('a', 'started', 1), build('b', 'stopped', 2)];
    expect(planEvictions(builds, { maxStarted: 1, maxDeployed: 2 })).toEqual({
      stop: [],
      undeploy: [],
    });
  });

  it('stops the least recently scaled started builds', () => {
    const builds = [
      build('new', 'started', 9),
      build('old', 'started', 1),
      build('mid', 'starting', 5),
    ];
    expect(planEvictions(builds, { maxStarted: 1, maxDeployed: 10 }).stop).toEqual(['old', 'mid']);
  });

  it('undeploys the oldest stopped or failed builds, never sticky, initializing or started ones', () => {
    const builds = [
      build('sticky-old', 'stopped', 0, true),
      build('init', 'initializing', 1),
      build('todo', 'todo', 1),
      build('running', 'started', 2),
      build('failed-old', 'failed', 3),
      build('stopped-mid', 'stopped', 4),
      build('stopped-new', 'stopped', 8),
    ];
    expect(planEvictions(builds, { maxStarted: 5, maxDeployed: 5 }).undeploy).toEqual([
      'failed-old',
      'stopped-mid',
    ]);
  });

  it('does not count builds already on their way out', () => {
    const builds = [
      build('a', 'stopped', 1),
      build('b', 'undeploying', 2),
      build('c', 'cleanup-failed', 3),
    ];
    expect(planEvictions(builds, { maxStarted: 1, maxDeployed: 1 }).undeploy).toEqual([]);
  });

  it('undeploys no more than it can when too few builds may go', () => {
    const builds = [
      build('s', 'stopped', 1, true),
      build('i', 'initializing', 2),
      build('f', 'failed', 3),
    ];
    expect(planEvictions(builds, { maxStarted: 1, maxDeployed: 1 }).undeploy).toEqual(['f']);
  });
});

describe('withChanges', () => {
  const limits = { maxStarted: 2, maxDeployed: 4 };
  const unseen = (c: { build: string; status: BuildStatus; lastScaled: string }): FleetMember => ({
    name: c.build,
    status: c.status,
    lastScaled: c.lastScaled,
    sticky: false,
  });

  it('counts a start the cache does not show yet, so the limit is restored at once', () => {
    // The cache still shows `c` stopped: the plan alone sees 2 started of 2 and stops nothing.
    const cache = [build('a', 'started', 1), build('b', 'started', 2), build('c', 'stopped', 0)];
    expect(planEvictions(cache, limits).stop).toEqual([]);
    const told = withChanges(
      cache,
      [{ build: 'c', status: 'starting', lastScaled: '2026-11-22T10:03:00Z' }],
      unseen,
    );
    expect(told.caughtUp).toEqual([]);
    expect(planEvictions(told.members, limits).stop).toEqual(['a']);
  });

  it('forgets a change once the cache shows it, or a later one', () => {
    const cache = [build('a', 'started', 3), build('b', 'stopped', 9)];
    const told = withChanges(
      cache,
      [
        { build: 'a', status: 'starting', lastScaled: '2026-11-22T10:03:00Z' },
        // Stopped by the fleet since it told its start.
        { build: 'b', status: 'starting', lastScaled: '2026-11-22T10:05:00Z' },
        // Undeployed since.
        { build: 'gone', status: 'starting', lastScaled: '2026-11-22T10:04:00Z' },
      ],
      unseen,
    );
    expect(told.caughtUp).toEqual(['a', 'b', 'gone']);
    expect(told.members).toEqual(cache);
  });

  it('counts a new build not seen yet towards the deployed limit', () => {
    const cache = [
      build('a', 'stopped', 1),
      build('b', 'stopped', 2),
      build('c', 'stopped', 3),
      build('d', 'stopped', 4),
    ];
    const told = withChanges(cache, [{ build: 'new', status: 'todo', lastScaled: '' }], unseen);
    expect(told.caughtUp).toEqual([]);
    expect(planEvictions(told.members, limits).undeploy).toEqual(['a']);
  });
});
