/**
 * Builds asked for but not deployed yet: their workflow runs, their Deployment does not exist
 * (no worker has taken them, or one is deploying them now). The informer cannot see them; Temporal
 * knows them by the search attributes set when their workflow is started (`lib/temporal.ts`), so
 * the API shows them with status `queued` instead of answering 404 (README, "The API").
 */
import { WorkflowNotFoundError, type Client, type WorkflowExecutionInfo } from '@temporalio/client';
import type { BuildStatus, CommitInfo } from '../domain/build.js';
import { buildSearchAttributeKeys as keys } from '../domain/search-attributes.js';

/** A build workflow that may have no Deployment yet. */
export interface QueuedBuild {
  name: string;
  /**
   * `queued` until its Deployment exists; `failed` when its deploy failed for good (invalid
   * kubefiles, a missing secret: docs/failures.md): it still answers reset and undeploy.
   */
  status: 'queued' | 'failed';
  commit: CommitInfo;
  /** When its workflow started (ISO 8601). */
  created: string;
}

/** Where the build index finds builds that are not deployed yet. */
export interface QueuedBuildSource {
  /** Every running build workflow whose Deployment may not exist yet. */
  list(): Promise<QueuedBuild[]>;
  /** The build workflow of that name, when it runs and may not be deployed yet. */
  find(name: string): Promise<QueuedBuild | undefined>;
}

/** Options of {@link temporalQueuedBuilds}. */
export interface TemporalQueuedBuildsOptions {
  client: Client;
  /** Only the builds of this task queue are ours (several installations may share a namespace). */
  buildsTaskQueue: string;
  /** At most this many builds per list (a bound on the cost of one refresh). */
  limit?: number;
  /** How long a look-up by name may wait for Temporal (default 5 s; then the API answers 503). */
  findTimeoutMs?: number;
}

/**
 * Statuses a build workflow has before its Deployment exists: `queued` (set at start, until a
 * worker runs it), `todo` (the worker is applying its Deployment) and `failed` (its deploy
 * failed). A deployed build of these statuses is shown from its Deployment instead.
 */
const undeployedStatuses: readonly BuildStatus[] = ['queued', 'todo', 'failed'];

const quoted = (value: string) => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

function queuedBuild(
  execution: Pick<WorkflowExecutionInfo, 'workflowId' | 'startTime' | 'typedSearchAttributes'>,
): QueuedBuild | undefined {
  const attributes = execution.typedSearchAttributes;
  const status = attributes.get(keys.status);
  const repo = attributes.get(keys.repo);
  const targetBranch = attributes.get(keys.targetBranch);
  const gitCommit = attributes.get(keys.commit);
  if (!repo || !targetBranch || !gitCommit) return undefined;
  if (!undeployedStatuses.includes(status as BuildStatus)) return undefined;
  return {
    name: execution.workflowId,
    status: status === 'failed' ? 'failed' : 'queued',
    commit: { repo, targetBranch, gitCommit, pr: attributes.get(keys.pr) ?? null },
    created: execution.startTime.toISOString(),
  };
}

/** The Temporal implementation: one visibility query per list, one describe per find. */
export function temporalQueuedBuilds(options: TemporalQueuedBuildsOptions): QueuedBuildSource {
  const { client, buildsTaskQueue } = options;
  const limit = options.limit ?? 5000;
  const query =
    `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running'` +
    ` AND TaskQueue = ${quoted(buildsTaskQueue)}` +
    ` AND ${keys.status.name} IN (${undeployedStatuses.map(quoted).join(', ')})`;
  return {
    async list() {
      const found: QueuedBuild[] = [];
      for await (const execution of client.workflow.list({ query, pageSize: 1000 })) {
        const build = queuedBuild(execution);
        if (build) found.push(build);
        if (found.length >= limit) break;
      }
      return found;
    },
    async find(name) {
      try {
        // A deadline: an unreachable Temporal is a 503 in seconds, not after the client's retries.
        const description = await client.withDeadline(
          Date.now() + (options.findTimeoutMs ?? 5000),
          () => client.workflow.getHandle(name).describe(),
        );
        if (
          description.type !== 'buildWorkflow' ||
          description.status.name !== 'RUNNING' ||
          description.taskQueue !== buildsTaskQueue
        ) {
          return undefined;
        }
        return queuedBuild(description);
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return undefined;
        throw error;
      }
    },
  };
}
