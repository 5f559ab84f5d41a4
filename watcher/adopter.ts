/**
 * Adoption: every build Deployment must have a running workflow. One that has none (Temporal lost
 * its history, or the namespace was run by the Python runboat) gets one, started from what the
 * Deployment and its Jobs say. Starting is idempotent (the workflow id is the Deployment's name),
 * so two watchers may run side by side. The adopter changes nothing in Kubernetes.
 * When it matters: docs/runbook.md, "Temporal lost its database".
 */
import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { CLEANUP_FINALIZER, JOB_KIND_LABEL } from '../domain/build.js';
import { adoptedState } from '../domain/adoption.js';
import { buildDetails, buildSummary } from '../domain/names.js';
import type { BuildWorkflowInput } from '../domain/messages.js';
import type { KubeClients } from '../lib/kube.js';
import type { Logger } from '../lib/logger.js';
import { buildPolicy, type TemporalOptions } from '../lib/temporal.js';
import type { DeploymentWatcher } from './deployment-watcher.js';

/** Workflow starts in flight at once during an adoption round. */
const ADOPT_CONCURRENCY = 16;

/** Running workflows read per visibility page. */
const LIST_PAGE_SIZE = 1000;

/** Options of {@link startAdopter}. */
export interface AdopterOptions {
  watcher: Pick<DeploymentWatcher, 'deployments'>;
  kube: KubeClients;
  namespace: string;
  client: Client;
  temporal: TemporalOptions;
  logger: Logger;
  /** Time between two rounds. */
  intervalMs: number;
  /** Running workflows read per visibility page (default {@link LIST_PAGE_SIZE}). */
  listPageSize?: number;
}

/** A running adopter. */
export interface Adopter {
  /** One round now; resolves with the number of builds adopted. */
  runOnce(): Promise<number>;
  /**
   * The next round now rather than at the end of the interval (Temporal was seen to have lost
   * its workflows); after the round under way when one is.
   */
  runSoon(): void;
  stop(): Promise<void>;
}

/** The first retry of a failed round (Temporal or the API server away); doubled up to the interval. */
const RETRY_MS = 1000;

/**
 * Starts adopting: a round at once, then one per interval; a round that failed is tried again
 * within seconds, so that the builds are adopted soon after Temporal comes back.
 */
export function startAdopter(options: AdopterOptions): Adopter {
  const { client, temporal, kube, namespace } = options;
  const log = options.logger.child({ component: 'adopter' });

  /**
   * The ids of the running build workflows, read page by page from the visibility API itself:
   * the client's `workflow.list` decodes each execution's memo, search attributes and times,
   * which this never reads, for every build of the farm at every round.
   */
  const runningWorkflows = async (): Promise<Set<string>> => {
    const running = new Set<string>();
    const query = `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '${temporal.buildsTaskQueue}'`;
    let nextPageToken: Uint8Array | undefined;
    do {
      const page = await client.workflowService.listWorkflowExecutions({
        namespace: client.options.namespace,
        query,
        pageSize: options.listPageSize ?? LIST_PAGE_SIZE,
        ...(nextPageToken ? { nextPageToken } : {}),
      });
      for (const execution of page.executions ?? []) {
        const id = execution.execution?.workflowId;
        if (id) running.add(id);
      }
      nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
    } while (nextPageToken);
    return running;
  };

  const runOnce = async (): Promise<number> => {
    const running = await runningWorkflows();
    const orphans = options.watcher.deployments().filter((deployment) => {
      const name = deployment.metadata?.name;
      if (!name || running.has(name)) return false;
      // Deleted and let go by its workflow: it is on its way out, not an orphan.
      const held = deployment.metadata?.finalizers?.includes(CLEANUP_FINALIZER) ?? false;
      return !deployment.metadata?.deletionTimestamp || held;
    });
    if (orphans.length === 0) return 0;
    const jobs = await kube.batch.listNamespacedJob({ namespace, labelSelector: JOB_KIND_LABEL });
    const jobNames = jobs.items.map((job) => job.metadata?.name ?? '');
    const began = Date.now();
    let adopted = 0;
    const adopt = async (deployment: (typeof orphans)[number]) => {
      const state = adoptedState(deployment, jobNames);
      const input: BuildWorkflowInput = {
        commit: state.commit,
        trigger: { kind: 'adopted' },
        state,
        ...buildPolicy(temporal),
      };
      try {
        const handle = await client.workflow.start('buildWorkflow', {
          workflowId: state.name,
          taskQueue: temporal.buildsTaskQueue,
          args: [input],
          workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
          staticSummary: `${buildSummary(state.commit)} · adopted`,
          staticDetails: buildDetails(state.commit),
        });
        adopted++;
        log.debug(
          { build: state.name, status: state.status, run: handle.firstExecutionRunId },
          'adopted',
        );
      } catch (error) {
        log.warn({ build: state.name, err: error }, 'could not adopt');
      }
    };
    // Several starts in flight: after Temporal lost its database, thousands of builds wait.
    const queue = [...orphans];
    await Promise.all(
      Array.from({ length: Math.min(ADOPT_CONCURRENCY, queue.length) }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await adopt(next);
      }),
    );
    log.info({ adopted, orphans: orphans.length, ms: Date.now() - began }, 'adoption round');
    return adopted;
  };

  let stopped = false;
  let running = false;
  let again = false;
  let retryMs = RETRY_MS;
  let round: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const schedule = (ms: number) => {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(tick, ms);
  };
  const tick = () => {
    if (stopped) return;
    running = true;
    again = false;
    round = runOnce()
      .then(
        () => {
          retryMs = RETRY_MS;
          return options.intervalMs;
        },
        (error: unknown) => {
          log.warn({ err: error, retryInMs: retryMs }, 'adoption round failed');
          const wait = retryMs;
          retryMs = Math.min(retryMs * 2, options.intervalMs);
          return Math.min(wait, options.intervalMs);
        },
      )
      .then((next) => {
        running = false;
        schedule(again ? 0 : next);
      });
  };
  schedule(0);
  return {
    runOnce,
    runSoon() {
      if (running) again = true;
      else schedule(0);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await round;
    },
  };
}
