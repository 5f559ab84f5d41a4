/**
 * The floor under a build's latencies, measured in the same run as the figures (bench/scale.ts):
 * what Temporal and the Kubernetes API server of this sandbox cost for the round trips a build
 * transition cannot avoid, with an empty workflow (bench/floor-workflows.ts) on a worker of the
 * benchmark's own and a ConfigMap written and watched. A figure of ours above its floor is ours
 * to cut; the floor is not.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { makeInformer, type V1ConfigMap } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  type WorkerOptions,
} from '@temporalio/worker';
import { buildSearchAttributeKeys } from '../domain/search-attributes.js';
import { superviseInformer, type KubeClients } from '../lib/kube.js';
import { doneSignal, pingUpdate } from './floor-workflows.js';
import { BenchClient, timed } from './http-client.js';

/** The floors, each a list of samples in ms. */
export interface Floors {
  /** Workflow started by a client → its first regular activity runs. */
  startToActivity: number[];
  /** An update sent → the local activity its handler runs. */
  updateToLocalActivity: number[];
  /** An update sent → its answer. */
  updateRoundTrip: number[];
  /** A regular activity returns → the local activity after it runs. */
  activityEndToLocalActivity: number[];
  /** A ConfigMap created → seen by a watch of this process. */
  kubeWriteToWatch: number[];
  /** A workflow start answered, 10 starts at a time (what a webhook for a configured repo waits on). */
  startAnswered10: number[];
  /** A GET answered by a Node server doing nothing else, one at a time, same client as the API's reads. */
  emptyHttpAnswer: number[];
}

/** The floor workflow's activities. */
export interface FloorActivities {
  mark(label: string): Promise<void>;
  held(): Promise<void>;
}

const LABEL = 'runboat-bench/floor';

/** A worker of the floor workflows on a task queue of its own, for one measurement. */
async function floorWorker(
  options: { temporalAddress: string; temporalNamespace: string },
  prefix: string,
  workerOptions: Pick<
    WorkerOptions,
    'activities' | 'maxConcurrentWorkflowTaskPolls' | 'nonStickyToStickyPollRatio'
  >,
) {
  try {
    // The benchmark's own worker says only what went wrong.
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // Installed by an earlier measurement of this process.
  }
  const taskQueue = `${prefix}-${Date.now()}`;
  const connection = await NativeConnection.connect({ address: options.temporalAddress });
  const worker = await Worker.create({
    connection,
    namespace: options.temporalNamespace,
    taskQueue,
    workflowsPath: fileURLToPath(new URL('./floor-workflows.ts', import.meta.url)),
    ...workerOptions,
  });
  return { taskQueue, connection, worker };
}

/** Measures `samples` of each floor; the worker and the watch live only for the measurement. */
export async function measureFloors(options: {
  client: Client;
  temporalAddress: string;
  temporalNamespace: string;
  kube: KubeClients;
  namespace: string;
  samples: number;
}): Promise<Floors> {
  const { client, kube, namespace, samples } = options;
  const marks = new Map<string, number>();
  const releases = new Map<string, () => void>();
  const releasedAt = new Map<string, number>();
  const activities: FloorActivities = {
    mark(label) {
      marks.set(
        `${Context.current().info.workflowExecution?.workflowId ?? ''} ${label}`,
        Date.now(),
      );
      return Promise.resolve();
    },
    held() {
      const id = Context.current().info.workflowExecution?.workflowId ?? '';
      return new Promise((resolve) => releases.set(id, resolve));
    },
  };
  const { taskQueue, connection, worker } = await floorWorker(options, 'bench-floor', {
    activities,
  });
  const floors: Floors = {
    startToActivity: [],
    updateToLocalActivity: [],
    updateRoundTrip: [],
    activityEndToLocalActivity: [],
    kubeWriteToWatch: [],
    startAnswered10: [],
    emptyHttpAnswer: [],
  };
  const waitFor = async (key: string, map: Map<string, unknown>) => {
    for (const deadline = Date.now() + 30_000; !map.has(key);) {
      if (Date.now() > deadline) throw new Error(`floor: ${key} not seen in 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  };
  const running = worker.run();
  try {
    for (let i = 0; i < samples; i++) {
      const id = `${taskQueue}-${i}`;
      const t0 = Date.now();
      const handle = await client.workflow.start('floorWorkflow', { workflowId: id, taskQueue });
      await waitFor(`${id} started`, marks);
      floors.startToActivity.push(marks.get(`${id} started`)! - t0);
      await waitFor(id, releases);
      // Let the worker settle on the held activity before the update.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const t1 = Date.now();
      await handle.executeUpdate(pingUpdate);
      floors.updateRoundTrip.push(Date.now() - t1);
      floors.updateToLocalActivity.push(marks.get(`${id} update`)! - t1);
      releasedAt.set(id, Date.now());
      releases.get(id)!();
      await waitFor(`${id} released`, marks);
      floors.activityEndToLocalActivity.push(marks.get(`${id} released`)! - releasedAt.get(id)!);
      await handle.signal(doneSignal);
      await handle.result();
    }
    // Starts answered, 10 at a time, as concurrent webhooks start builds; on a queue no worker
    // polls, so that the starts alone are timed. Terminated at once.
    const idle = `${taskQueue}-unpolled`;
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < samples * 5) {
          const id = `${idle}-${next++}`;
          const t0 = Date.now();
          await client.workflow.start('floorWorkflow', { workflowId: id, taskQueue: idle });
          floors.startAnswered10.push(Date.now() - t0);
          ids.push(id);
        }
      }),
    );
    await Promise.all(ids.map((id) => client.workflow.getHandle(id).terminate('floor measured')));
  } finally {
    worker.shutdown();
    await running;
    await connection.close();
  }

  // Each add resolves its waiter at once: no polling between the watch and the clock.
  const seen = new Map<string, number>();
  const waiters = new Map<string, (at: number) => void>();
  const onAdd = (name: string) => {
    const at = performance.now();
    seen.set(name, at);
    waiters.get(name)?.(at);
  };
  const seenAt = (name: string) =>
    new Promise<number>((resolve, reject) => {
      const already = seen.get(name);
      if (already !== undefined) return resolve(already);
      const timer = setTimeout(
        () => reject(new Error(`floor: ConfigMap ${name} not seen`)),
        30_000,
      );
      waiters.set(name, (at) => {
        clearTimeout(timer);
        resolve(at);
      });
    });
  const informer = makeInformer<V1ConfigMap>(
    kube.config,
    `/api/v1/namespaces/${namespace}/configmaps`,
    () => kube.core.listNamespacedConfigMap({ namespace, labelSelector: LABEL }),
    LABEL,
  );
  informer.on('add', (cm) => onAdd(cm.metadata?.name ?? ''));
  const watch = await superviseInformer(informer, () => undefined);
  try {
    for (let i = 0; i < samples; i++) {
      const name = `bench-floor-${Date.now()}-${i}`;
      const t0 = performance.now();
      const visible = seenAt(name);
      await kube.core.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name, labels: { [LABEL]: 'x' } }, data: { i: String(i) } },
      });
      floors.kubeWriteToWatch.push((await visible) - t0);
      await kube.core.deleteNamespacedConfigMap({ name, namespace });
    }
  } finally {
    await watch.stop();
  }
  floors.emptyHttpAnswer = await emptyHttpAnswers(samples * 30);
  return floors;
}

/**
 * `count` GETs, one at a time over a kept-alive connection, answered by a Node process that does
 * nothing else (a fixed small JSON body): what a read costs on this machine, at this load, before
 * any work of the API's.
 */
async function emptyHttpAnswers(count: number): Promise<number[]> {
  const server = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:http').createServer((q, r) => {
         r.setHeader('content-type', 'application/json');
         r.end('{"ok":true}');
       });
       s.listen(0, '127.0.0.1', () => console.log(s.address().port));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const port = await new Promise<string>((resolve, reject) => {
      server.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
      server.once('exit', () => reject(new Error('the empty HTTP server did not start')));
    });
    const client = new BenchClient(`http://127.0.0.1:${port}`);
    try {
      await timed(20, 1, async () => {
        await client.get('/');
      });
      return (
        await timed(count, 1, async () => {
          await client.get('/');
        })
      ).latencies;
    } finally {
      client.close();
    }
  } finally {
    server.kill();
  }
}

/**
 * The floor under adoption: `count` empty workflows (`adoptFloorWorkflow`) started `concurrency`
 * at a time, as the adopter starts builds, on a worker polling as the builds worker does; the
 * seconds until each ran its first task (its search attribute visible, as the benchmarks count
 * an adoption). What this Temporal server on this machine allows before any work of ours.
 */
export async function measureAdoptionFloor(options: {
  client: Client;
  temporalAddress: string;
  temporalNamespace: string;
  count: number;
  concurrency: number;
  workflowTaskPolls: number;
  log?: (line: string) => void;
}): Promise<number> {
  const { client, count } = options;
  const { taskQueue, connection, worker } = await floorWorker(options, 'bench-adopt-floor', {
    activities: { mark: () => Promise.resolve(), held: () => Promise.resolve() },
    maxConcurrentWorkflowTaskPolls: options.workflowTaskPolls,
    nonStickyToStickyPollRatio: 0.5,
  });
  const running = worker.run();
  try {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (next < count) {
          const i = next++;
          await client.workflow.start('adoptFloorWorkflow', {
            workflowId: `${taskQueue}-${i}`,
            taskQueue,
          });
        }
      }),
    );
    const query = `WorkflowType = 'adoptFloorWorkflow' AND TaskQueue = '${taskQueue}' AND ${buildSearchAttributeKeys.status.name} IS NOT NULL`;
    let lastLine = performance.now();
    for (;;) {
      const done =
        (
          await client.workflowService.countWorkflowExecutions({
            namespace: options.temporalNamespace,
            query,
          })
        ).count?.toNumber() ?? 0;
      if (done >= count) return (performance.now() - t0) / 1000;
      if (performance.now() - lastLine > 5000) {
        lastLine = performance.now();
        options.log?.(`floor: ${done}/${count} empty workflows ran their first task`);
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  } finally {
    worker.shutdown();
    await running;
    await connection.close();
  }
}

/**
 * An update → the local activity its handler runs, every `everyMs` while `busy` runs: what one
 * hop through Temporal costs under the load of the rest of the benchmark (a churn), against its
 * floor at rest ({@link Floors.updateToLocalActivity}).
 */
export async function updateFloorWhile(
  options: { client: Client; temporalAddress: string; temporalNamespace: string },
  busy: Promise<unknown>,
  everyMs = 500,
): Promise<number[]> {
  const marks = new Map<string, number>();
  let release: (() => void) | undefined;
  const activities: FloorActivities = {
    mark(label) {
      marks.set(label, Date.now());
      return Promise.resolve();
    },
    held: () => new Promise((resolve) => (release = resolve)),
  };
  const { taskQueue, connection, worker } = await floorWorker(options, 'bench-floor-busy', {
    activities,
  });
  const running = worker.run();
  const samples: number[] = [];
  let over = false;
  void busy.finally(() => (over = true));
  try {
    const handle = await options.client.workflow.start('floorWorkflow', {
      workflowId: taskQueue,
      taskQueue,
    });
    while (!release) await new Promise((resolve) => setTimeout(resolve, 10));
    while (!over) {
      marks.delete('update');
      const t0 = Date.now();
      await handle.executeUpdate(pingUpdate);
      samples.push((marks.get('update') ?? NaN) - t0);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    release();
    await handle.signal(doneSignal);
    await handle.result();
  } finally {
    worker.shutdown();
    await running;
    await connection.close();
  }
  return samples;
}
