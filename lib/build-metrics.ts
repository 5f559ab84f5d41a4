/**
 * The system's own Prometheus metrics of builds, recorded by the worker (docs/operations.md,
 * "Metrics and alerts"): builds by status from the watcher's cache; webhook-to-deployed latency,
 * init queue wait and duration, transitions and cleanup failures from the activities. The activities receive the small
 * {@link BuildMetrics} interface, never prom-client itself.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { buildStatuses, deriveStatus, STATUS_LABEL, type BuildStatus } from '../domain/build.js';

/** What the activities record. */
export interface BuildMetrics {
  /** Seconds an init activity waited between being scheduled and starting (slot wait). */
  initQueueWait(seconds: number): void;
  /** Seconds an init Job ran, by how it ended. */
  initEnded(seconds: number, outcome: InitOutcome): void;
  /** A build entered `status` (written onto its Deployment). */
  transition(status: BuildStatus): void;
  /** A cleanup Job failed (the build may then show `cleanup-failed`). */
  cleanupFailed(): void;
  /** Seconds from a build's workflow start (the webhook or API call) to its Deployment applied. */
  deployed(seconds: number): void;
}

/** How an init ended: its Job succeeded or failed, or the activity ended otherwise. */
export type InitOutcome = 'succeeded' | 'failed' | 'error';

/** Metrics that record nothing (a process without a registry, unit tests). */
export const noBuildMetrics: BuildMetrics = {
  initQueueWait: () => undefined,
  initEnded: () => undefined,
  transition: () => undefined,
  cleanupFailed: () => undefined,
  deployed: () => undefined,
};

/** The names of the metrics this module registers (the alert rules test reads them). */
export const buildMetricNames = {
  builds: 'runboat_builds',
  initQueueWait: 'runboat_init_queue_wait_seconds',
  initDuration: 'runboat_init_duration_seconds',
  transitions: 'runboat_build_transitions_total',
  cleanupFailures: 'runboat_cleanup_failures_total',
  deployLatency: 'runboat_deploy_latency_seconds',
} as const;

/** Registers the activities' metrics in `registry`. */
export function createBuildMetrics(registry: Registry): BuildMetrics {
  const queueWait = new Histogram({
    name: buildMetricNames.initQueueWait,
    help: 'Seconds from scheduling an init activity to its start (waiting for an init slot)',
    buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
    registers: [registry],
  });
  const duration = new Histogram({
    name: buildMetricNames.initDuration,
    help: 'Seconds an init Job ran, by outcome (succeeded, failed, error)',
    labelNames: ['outcome'] as const,
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600],
    registers: [registry],
  });
  const transitions = new Counter({
    name: buildMetricNames.transitions,
    help: 'Build transitions written onto Deployments, by the status entered',
    labelNames: ['to'] as const,
    registers: [registry],
  });
  const cleanupFailures = new Counter({
    name: buildMetricNames.cleanupFailures,
    help: 'Cleanup Jobs that failed',
    registers: [registry],
  });
  const deployLatency = new Histogram({
    name: buildMetricNames.deployLatency,
    help: 'Seconds from a new build being asked for (webhook, API) to its Deployment applied',
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  return {
    deployed: (seconds) => deployLatency.observe(Math.max(0, seconds)),
    initQueueWait: (seconds) => queueWait.observe(Math.max(0, seconds)),
    initEnded: (seconds, outcome) => duration.observe({ outcome }, Math.max(0, seconds)),
    transition: (status) => transitions.inc({ to: status }),
    cleanupFailed: () => cleanupFailures.inc(),
  };
}

/** A build Deployment, as far as its status goes. */
interface DeploymentLike {
  metadata?: {
    deletionTimestamp?: Date | string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: { replicas?: number };
  status?: { readyReplicas?: number };
}

/**
 * Registers `runboat_builds{status}`: the build Deployments by status, counted from `deployments`
 * (the watcher's informer cache) at each scrape. Every status is present, 0 included, so that an
 * alert on one status has a series to compare.
 */
export function registerBuildsGauge(
  registry: Registry,
  deployments: () => readonly DeploymentLike[],
): void {
  new Gauge({
    name: buildMetricNames.builds,
    help: 'Build Deployments by status (from the builds worker watcher cache)',
    labelNames: ['status'] as const,
    registers: [registry],
    collect() {
      const counts = new Map<BuildStatus, number>(
        buildStatuses.filter((status) => status !== 'queued').map((status) => [status, 0]),
      );
      for (const deployment of deployments()) {
        const status = deriveStatus({
          deletionTimestamp: deployment.metadata?.deletionTimestamp,
          replicas: deployment.spec?.replicas ?? 0,
          readyReplicas: deployment.status?.readyReplicas ?? 0,
          annotations: deployment.metadata?.annotations ?? {},
          statusLabel: deployment.metadata?.labels?.[STATUS_LABEL],
        });
        counts.set(status, (counts.get(status) ?? 0) + 1);
      }
      for (const [status, count] of counts) this.set({ status }, count);
    },
  });
}
