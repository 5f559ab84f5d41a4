/**
 * The worker status of `GET /api/v1/status`: which pollers count as live, how long an answer is
 * reused, and an unreachable Temporal reported as such (a real client on a port nobody serves).
 */
import { createServer } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { createWorkerStatus } from '../../api/worker-status.js';

const queues = { builds: 'runboat-builds', init: 'runboat-init' };
const NOW = Date.parse('2026-01-01T12:00:00.000Z');
const at = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });

/** A client whose describeTaskQueue answers from a table (by task queue name and type). */
function describingClient(pollers: Record<string, { identity: string; lastMs: number }[]>) {
  const calls: string[] = [];
  const client = {
    connection: { withDeadline: (_deadline: number, fn: () => Promise<unknown>) => fn() },
    workflowService: {
      describeTaskQueue(request: { taskQueue: { name: string }; taskQueueType: number }) {
        const key = `${request.taskQueue.name}/${request.taskQueueType}`;
        calls.push(key);
        return Promise.resolve({
          pollers: (pollers[key] ?? []).map((p) => ({
            identity: p.identity,
            lastAccessTime: at(p.lastMs),
          })),
        });
      },
    },
  };
  return { client: client as unknown as Client, calls };
}

describe('the worker status', () => {
  it('counts the pollers seen lately, on the workflow queue of builds and the activity queue of init', async () => {
    const { client, calls } = describingClient({
      'runboat-builds/1': [{ identity: 'worker-a', lastMs: NOW - 5_000 }],
      // Temporal keeps a dead worker's poller for minutes: too old to count.
      'runboat-init/2': [{ identity: 'worker-gone', lastMs: NOW - 240_000 }],
    });
    const status = await createWorkerStatus({
      client,
      namespace: 'default',
      queues,
      now: () => NOW,
    })();
    expect(calls.sort()).toEqual(['runboat-builds/1', 'runboat-init/2']);
    expect(status).toEqual({
      temporal_reachable: true,
      queues: [
        {
          role: 'builds',
          task_queue: 'runboat-builds',
          polling: true,
          pollers: [{ identity: 'worker-a', last_access_time: '2026-01-01T11:59:55.000Z' }],
        },
        { role: 'init', task_queue: 'runboat-init', polling: false, pollers: [] },
      ],
      warnings: [
        'No worker is polling the init task queue “runboat-init”: changes are queued until a worker runs (no build is initialized).',
      ],
      checked_at: '2026-01-01T12:00:00.000Z',
    });
  });

  it('reports the image build queue when asked to (a repo entry builds images)', async () => {
    const { client, calls } = describingClient({
      'runboat-builds/1': [{ identity: 'worker-a', lastMs: NOW - 5_000 }],
      'runboat-init/2': [{ identity: 'worker-a', lastMs: NOW - 5_000 }],
    });
    const status = await createWorkerStatus({
      client,
      namespace: 'default',
      queues: { ...queues, 'image-build': 'runboat-image-build' },
      now: () => NOW,
    })();
    // Its pollers run activities only, like init's.
    expect(calls).toContain('runboat-image-build/2');
    expect(status.queues.map((queue) => [queue.role, queue.polling])).toEqual([
      ['builds', true],
      ['init', true],
      ['image-build', false],
    ]);
    expect(status.warnings).toEqual([
      'No worker is polling the image-build task queue “runboat-image-build”: changes are queued until a worker runs (no image is built: builds with an image build stay building).',
    ]);
  });

  it('asks Temporal at most once per cache period', async () => {
    let now = NOW;
    const { client, calls } = describingClient({});
    const status = createWorkerStatus({
      client,
      namespace: 'default',
      queues,
      cacheMs: 5000,
      now: () => now,
    });
    await Promise.all([status(), status(), status()]);
    now += 4999;
    const cached = await status();
    expect(calls).toHaveLength(2);
    expect(cached.warnings).toHaveLength(2);
    now += 1;
    await status();
    expect(calls).toHaveLength(4);
  });

  it('answers at once from a stale answer while it asks Temporal again, and waits past staleMs', async () => {
    let now = NOW;
    let lastMs = NOW;
    const held: (() => void)[] = [];
    const calls: number[] = [];
    const client = {
      connection: { withDeadline: (_deadline: number, fn: () => Promise<unknown>) => fn() },
      workflowService: {
        async describeTaskQueue() {
          calls.push(now);
          const seen = lastMs;
          // The second round of questions hangs until released: a slow Temporal.
          if (calls.length === 3 || calls.length === 4)
            await new Promise<void>((resolve) => held.push(resolve));
          return { pollers: [{ identity: 'worker-a', lastAccessTime: at(seen) }] };
        },
      },
    } as unknown as Client;
    const status = createWorkerStatus({
      client,
      namespace: 'default',
      queues,
      cacheMs: 5000,
      now: () => now,
    });
    const first = await status();
    expect(first.checked_at).toBe(new Date(NOW).toISOString());

    now += 6000;
    lastMs = now;
    // Temporal hangs, yet the caller gets the previous answer at once.
    const stale = await status();
    expect(stale).toBe(first);
    expect(calls).toHaveLength(4);
    for (const release of held) release();
    await new Promise((resolve) => setTimeout(resolve, 0));
    const fresh = await status();
    expect(fresh.checked_at).toBe(new Date(NOW + 6000).toISOString());
    expect(calls).toHaveLength(4);

    // Past staleMs (3 × cacheMs) the caller waits for the new answer.
    now += 15_000;
    const waited = await status();
    expect(waited.checked_at).toBe(new Date(NOW + 21_000).toISOString());
    expect(calls).toHaveLength(6);
  });

  it('says Temporal does not answer instead of failing', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    // No gRPC retries: a retry timer left pending would fire after the connection is closed
    // and fail the run with an unhandled error (the deadline of a hung Temporal is tested
    // against a real server in test/integration/api-hardening.test.ts).
    const connection = Connection.lazy({ address: `127.0.0.1:${port}`, interceptors: [] });
    try {
      const client = new Client({ connection, namespace: 'default' });
      const started = Date.now();
      const status = await createWorkerStatus({
        client,
        namespace: 'default',
        queues,
        timeoutMs: 1500,
      })();
      expect(Date.now() - started).toBeLessThan(5000);
      expect(status.temporal_reachable).toBe(false);
      expect(status.error).toBeTruthy();
      expect(status.queues.map((q) => [q.task_queue, q.polling])).toEqual([
        ['runboat-builds', null],
        ['runboat-init', null],
      ]);
      expect(status.warnings).toEqual([expect.stringMatching(/^Temporal does not answer/)]);
    } finally {
      await connection.close();
    }
  });
});
