/**
 * For tests that need Temporal only: a worker of the sandbox's real Temporal server that runs
 * some workflows (and, where they call any, activities of the test's own) on a task queue of its
 * own, with a client.
 */
import type { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { inject } from 'vitest';
import { temporalClient } from './helpers.js';

/** Options of {@link startWorkflowWorker}. */
export interface WorkflowWorkerOptions {
  taskQueue: string;
  /** The module exporting the workflows (a path). */
  workflowsPath: string;
  activities?: Record<string, (...args: never[]) => Promise<unknown>>;
}

/** A running worker and a client of the same server. */
export interface WorkflowWorker {
  client: Client;
  stop(): Promise<void>;
}

let runtimeInstalled = false;

/** Starts the worker; resolves once it polls. */
export async function startWorkflowWorker(options: WorkflowWorkerOptions): Promise<WorkflowWorker> {
  if (!runtimeInstalled) {
    // The worker's lifecycle lines would bury the test report.
    Runtime.install({ logger: new DefaultLogger('WARN') });
    runtimeInstalled = true;
  }
  const { temporal } = inject('sandbox');
  const client = await temporalClient();
  const connection = await NativeConnection.connect({ address: temporal.address });
  const worker = await Worker.create({
    connection,
    namespace: temporal.namespace,
    taskQueue: options.taskQueue,
    workflowsPath: options.workflowsPath,
    ...(options.activities ? { activities: options.activities } : {}),
  });
  const running = worker.run();
  return {
    client,
    async stop() {
      worker.shutdown();
      await running;
      await connection.close();
      await client.connection.close();
    },
  };
}
