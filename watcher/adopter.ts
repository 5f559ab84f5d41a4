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
import type { V1Deployment } from '@kubernetes/client-node';
import type { KubeClients } from '../lib/kube.js';
import type { Logger } from '../lib/logger.js';
import { buildPolicy, type TemporalOptions } from '../lib/temporal.js';
import type { DeploymentWatcher } from './deployment-watcher.js';

/** Workflow starts in flight at once during an adoption round. */
const ADOPT_CONCURRENCY = 16;

/** Running workflows read per visibility page. */
const LIST_PAGE_SIZE = 1000;

/** Default of {@link AdopterOptions.listEveryMs}. */
const LIST_EVERY_MS = 600_000;

/**
 * Workflows closed this long before the previous round began are looked at again: Temporal's
 * clock may differ from ours, and its visibility store shows a closed workflow a moment late.
 */
const CLOSED_OVERLAP_MS = 60_000;

/** More builds to check than this: one listing of every running workflow is cheaper. */
const SUSPECTS_MAX = 500;

/** Workflow ids per `WorkflowId IN (…)` query. */
const IDS_PER_QUERY = 100;

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
  /**
   * The longest time between two rounds that list every running workflow (default
   * {@link LIST_EVERY_MS}); the rounds between them look only at the Deployments new since the
   * previous round and at the workflows closed since then.
   */
  listEveryMs?: number;
}

/** A running adopter. */
export interface Adopter {
  /** One round now; resolves with the number of builds adopted. */
  runOnce(): Promise<number>;
  /**
   * The next round now rather than at the end of the interval (Temporal was seen to have lost
   * its workflows), one that lists every running workflow; after the round under way when one is.
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

  const buildsQuery = `WorkflowType = 'buildWorkflow' AND TaskQueue = '${temporal.buildsTaskQueue}'`;
  const runningQuery = `${buildsQuery} AND ExecutionStatus = 'Running'`;
  /**
   * The ids of the workflows a query finds, read page by page from the visibility API itself:
   * the client's `workflow.list` decodes each execution's memo, search attributes and times,
   * which this never reads.
   */
  const workflowIds = async (query: string): Promise<Set<string>> => {
    const ids = new Set<string>();
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
        if (id) ids.add(id);
      }
      nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
    } while (nextPageToken);
    return ids;
  };
  /** Which of these builds have a running workflow, a hundred a query. */
  const runningAmong = async (names: readonly string[]): Promise<Set<string>> => {
    const found = new Set<string>();
    for (let at = 0; at < names.length; at += IDS_PER_QUERY) {
      const ids = names.slice(at, at + IDS_PER_QUERY).map((name) => `'${name}'`);
      for (const id of await workflowIds(`${runningQuery} AND WorkflowId IN (${ids.join(', ')})`))
        found.add(id);
    }
    return found;
  };

  const listEveryMs = options.listEveryMs ?? LIST_EVERY_MS;
  /** When every running workflow was last listed (the first round lists them). */
  let listedAt = -Infinity;
  /** A listing asked for by {@link Adopter.runSoon}. */
  let listAsked = false;
  /** The builds of the previous round, and when it began (Temporal's time of closing). */
  let previous: { names: ReadonlySet<string>; began: number } | undefined;
  /** Builds whose adoption failed: looked at again at the next round. */
  const failed = new Set<string>();

  /**
   * The Deployments without a running workflow. Every running workflow is listed now and then;
   * at 10,000 builds a listing decodes 10,000 executions (and a major GC follows), which made most
   * of an idle worker's CPU. Between listings a round looks only where an orphan can come from:
   * a Deployment new since the previous round (the Python runboat's, or one made by hand), and a
   * workflow closed since then (terminated by hand) whose Deployment is still there. A Temporal
   * that lost its workflows is seen by the singletons check, which asks for a listing (runSoon).
   */
  const orphansOf = async (candidates: readonly V1Deployment[], began: number) => {
    const names = new Set(candidates.map((deployment) => deployment.metadata?.name ?? ''));
    const listDue = listAsked || !previous || began - listedAt >= listEveryMs;
    let suspects: Set<string> | undefined;
    if (!listDue && previous) {
      const since = new Date(previous.began - CLOSED_OVERLAP_MS).toISOString();
      const closed = await workflowIds(
        `${buildsQuery} AND ExecutionStatus != 'Running' AND CloseTime > '${since}'`,
      );
      const known = previous.names;
      suspects = new Set(
        [...names].filter((name) => !known.has(name) || closed.has(name) || failed.has(name)),
      );
    }
    let orphanNames: (name: string) => boolean;
    if (suspects && suspects.size <= SUSPECTS_MAX) {
      const alive = await runningAmong([...suspects]);
      const orphans = suspects;
      orphanNames = (name) => orphans.has(name) && !alive.has(name);
    } else {
      listAsked = false;
      const alive = await workflowIds(runningQuery).catch((error: unknown) => {
        listAsked = true;
        throw error;
      });
      listedAt = began;
      orphanNames = (name) => !alive.has(name);
    }
    previous = { names, began };
    failed.clear();
    return candidates.filter((deployment) => orphanNames(deployment.metadata?.name ?? ''));
  };

  const runOnce = async (): Promise<number> => {
    const began = Date.now();
    const candidates = options.watcher.deployments().filter((deployment) => {
      if (!deployment.metadata?.name) return false;
      // Deleted and let go by its workflow: it is on its way out, not an orphan.
      const held = deployment.metadata.finalizers?.includes(CLEANUP_FINALIZER) ?? false;
      return !deployment.metadata.deletionTimestamp || held;
    });
    const orphans = await orphansOf(candidates, began);
    if (orphans.length === 0) return 0;
    const jobs = await kube.batch.listNamespacedJob({ namespace, labelSelector: JOB_KIND_LABEL });
    const jobNames = jobs.items.map((job) => job.metadata?.name ?? '');
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
        failed.add(state.name);
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
      listAsked = true;
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
