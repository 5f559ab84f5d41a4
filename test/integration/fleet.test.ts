/**
 * The fleet's limits against the real sandbox: MAX_STARTED=2 and MAX_DEPLOYED=5 with 12 builds,
 * one branch sticky. Once settled the cluster holds no more than the limits, the oldest builds
 * went first, and the sticky branch's newest build stayed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_LABEL, type CommitInfo } from '../../domain/build.js';
import { fleetWorkflowId, startUpdate } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';

import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/shop',
        branch: 'main',
        sticky: true,
        builds: [{ image: 'ghcr.io/acme/odoo:16.0' }],
      },
      { repo: 'acme/.*', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
    ],
  });
  await env.startWorker({ RUNBOAT_MAX_STARTED: '2', RUNBOAT_MAX_DEPLOYED: '5' });
});

afterAll(async () => {
  await env?.close();
});

async function clusterState() {
  const list = await env.kube.apps.listNamespacedDeployment({
    namespace: env.namespace,
    labelSelector: BUILD_LABEL,
  });
  const live = list.items.filter((d) => !d.metadata?.deletionTimestamp);
  return {
    names: live.map((d) => d.metadata?.name ?? ''),
    started: live.filter((d) => (d.spec?.replicas ?? 0) > 0).map((d) => d.metadata?.name ?? ''),
  };
}

describe('the fleet', () => {
  it('keeps at most 2 started and 5 deployed builds, evicting the oldest, keeping the sticky one', async () => {
    // The sticky branch's build comes first: the oldest of all, yet never evicted.
    const sticky = env.commit('acme/shop', 'main');
    await env.build(sticky);
    await env.waitForStatus(buildName(sticky), 'stopped');
    const others: CommitInfo[] = [];
    for (let i = 0; i < 11; i++) {
      const commit = env.commit('acme/shop', `feature-${String(i).padStart(2, '0')}`);
      others.push(commit);
      await env.build(commit);
      await env.waitForStatus(buildName(commit), 'stopped', 60_000).catch(() => undefined);
    }
    // Start four of the survivors one after the other: only the last two may stay started.
    const settled = await eventually(
      async () => {
        const state = await clusterState();
        expect(state.names.length).toBeLessThanOrEqual(5);
        return state;
      },
      90_000,
      500,
    );
    expect(settled.names).toContain(buildName(sticky));
    // The newest builds survive; the oldest non-sticky ones went first.
    const newest = others.slice(-4).map(buildName);
    expect(settled.names.sort()).toEqual([buildName(sticky), ...newest].sort());

    const crossed: number[] = [];
    for (const commit of others.slice(-4)) {
      await env.client.workflow.getHandle(buildName(commit)).executeUpdate(startUpdate);
      await env.waitForStatus(buildName(commit), 'started');
      crossed.push(Date.now());
    }
    const final = await eventually(
      async () => {
        const state = await clusterState();
        expect(state.started.length).toBeLessThanOrEqual(2);
        return state;
      },
      60_000,
      100,
    );
    console.log(
      `MAX_STARTED restored ${Date.now() - (crossed[3] ?? 0)} ms after the limit was crossed`,
    );
    expect(final.started.sort()).toEqual(others.slice(-2).map(buildName).sort());
    expect(final.names.length).toBeLessThanOrEqual(5);
    expect(final.names).toContain(buildName(sticky));
  });

  it('keeps the fleet out of its history: only the names it evicts come back from the worker', async () => {
    const history = await env.client.workflow
      .getHandle(fleetWorkflowId(env.temporal.buildsTaskQueue))
      .fetchHistory();
    const events = history.events ?? [];
    const scheduled = events
      .map((event) => event.activityTaskScheduledEventAttributes?.activityType?.name)
      .filter(Boolean);
    expect(scheduled).not.toContain('fleetSnapshot');
    expect(scheduled).not.toContain('fleetPlan');
    // The plan is a local activity: its result is in the marker it records.
    const json = (payloads: { data?: Uint8Array | null }[] | null | undefined) => {
      const data = payloads?.[0]?.data;
      return data ? (JSON.parse(Buffer.from(data).toString()) as Record<string, unknown>) : {};
    };
    const markers = events
      .map((event) => event.markerRecordedEventAttributes)
      .filter((marker) => marker?.markerName === 'core_local_activity')
      .map((marker) => ({
        type: json(marker?.details?.data?.payloads).activity_type,
        result: json(marker?.details?.result?.payloads),
      }));
    expect(markers.map((m) => m.type)).toContain('fleetPlan');
    const results = markers.filter((m) => m.type === 'fleetPlan').map((m) => m.result);
    expect(results.length).toBeGreaterThan(0);
    const evicted = new Set(
      results.flatMap((r) => [...(r.stop as string[]), ...(r.undeploy as string[])]),
    );
    // 12 builds were deployed; 7 were undeployed and 2 stopped: nothing else crossed over.
    expect(evicted.size).toBeLessThanOrEqual(9);
    // Besides: the changes builds told that the cache now shows (names of this test's 12).
    let caughtUp = 0;
    for (const result of results) {
      expect(
        Object.keys(result)
          .filter((key) => key !== 'caughtUp')
          .sort(),
      ).toEqual(['counts', 'settled', 'stop', 'undeploy']);
      for (const name of result.settled as string[]) expect(evicted).toContain(name);
      const told = (result.caughtUp ?? []) as string[];
      expect(told.length).toBeLessThanOrEqual(12);
      caughtUp += told.length;
    }
    // Each deploy and each start told the fleet; the cache caught up with them.
    expect(caughtUp).toBeGreaterThan(0);
    // The 200 ms a burst settles are waited in the plan's local activity, not on workflow timers
    // (Temporal fired those after ~1 s): before, one such timer preceded every plan.
    const settleTimers = events.filter((event) => {
      const timeout = event.timerStartedEventAttributes?.startToFireTimeout;
      return timeout && Number(timeout.seconds ?? 0) === 0 && timeout.nanos === 200_000_000;
    });
    expect(results.length).toBeGreaterThan(2);
    expect(settleTimers.length).toBeLessThan(results.length / 2);
    const largest = Math.max(...results.map((r) => JSON.stringify(r).length));
    expect(largest).toBeLessThan(1024);
    console.log(`fleet plan results: ${results.length}, largest ${largest} bytes`);
  });
});
