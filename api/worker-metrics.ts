/**
 * The workers as Prometheus sees them from the API (docs/operations.md, "Metrics and alerts"):
 * how many workers poll each task queue, and whether Temporal answered, from the same worker
 * status `GET /api/v1/status` shows. A dead worker exports nothing, so the alert "no worker polls
 * a queue" needs a witness outside the workers: this one.
 */
import { Gauge, type Registry } from 'prom-client';
import type { WorkerStatus } from './worker-status.js';

/** The names of the metrics this module registers (the alert rules test reads them). */
export const workerMetricNames = {
  pollers: 'runboat_task_queue_pollers',
  temporalReachable: 'runboat_temporal_reachable',
} as const;

/**
 * Registers `runboat_task_queue_pollers{role,queue}` (workers that polled lately) and
 * `runboat_temporal_reachable` (1 or 0), asked at each scrape from `workers` (which caches its
 * answer for a few seconds). While Temporal does not answer, the pollers are not reported.
 */
export function registerWorkerMetrics(
  registry: Registry,
  workers: () => Promise<WorkerStatus>,
): void {
  new Gauge({
    name: workerMetricNames.pollers,
    help: 'Workers that polled the task queue lately (Temporal task queue description)',
    labelNames: ['role', 'queue'] as const,
    registers: [registry],
    async collect() {
      const status = await workers();
      this.reset();
      for (const queue of status.queues) {
        if (queue.polling === null) continue;
        this.set({ role: queue.role, queue: queue.task_queue }, queue.pollers.length);
      }
    },
  });
  new Gauge({
    name: workerMetricNames.temporalReachable,
    help: 'Whether Temporal answered the API (1) or not (0)',
    registers: [registry],
    async collect() {
      this.set((await workers()).temporal_reachable ? 1 : 0);
    },
  });
}
