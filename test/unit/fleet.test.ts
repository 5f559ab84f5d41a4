import { describe, expect, it } from 'vitest';
import type { BuildStatus } from '../../domain/build.js';
import { planEvictions, type FleetMember } from '../../domain/fleet.js';

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
