/**
 * Temporal plumbing shared by the processes: connecting a client, and starting (or finding) the
 * workflow of a build so that asking twice for the same commit yields one build.
 */
import {
  Client,
  Connection,
  WorkflowIdConflictPolicy,
  type WorkflowHandle,
} from '@temporalio/client';
import type { SearchAttributePair } from '@temporalio/common';
import type { BuildStatus, CommitInfo } from '../domain/build.js';
import { fleetWorkflowId, type BuildTrigger, type BuildWorkflowInput } from '../domain/messages.js';
import { buildName } from '../domain/names.js';
import { buildSearchAttributeKeys as keys } from '../domain/search-attributes.js';

/** Where Temporal is and which queues the builds use. */
export interface TemporalOptions {
  address: string;
  namespace: string;
  buildsTaskQueue: string;
  initTaskQueue: string;
  /** Newer commits cancel builds of the same branch or PR still queued for init. */
  cancelSuperseded?: boolean;
  /** Cleanup Jobs per undeploy, and seconds before the second (doubled after). */
  cleanup?: { attempts: number; retrySeconds: number };
}

/** The part of a build workflow's input that comes from the settings, not from the build. */
export function buildPolicy(
  options: TemporalOptions,
): Pick<
  BuildWorkflowInput,
  | 'initTaskQueue'
  | 'fleetWorkflowId'
  | 'cancelSuperseded'
  | 'cleanupAttempts'
  | 'cleanupRetrySeconds'
> {
  return {
    initTaskQueue: options.initTaskQueue,
    fleetWorkflowId: fleetWorkflowId(options.buildsTaskQueue),
    cancelSuperseded: options.cancelSuperseded ?? false,
    ...(options.cleanup
      ? {
          cleanupAttempts: options.cleanup.attempts,
          cleanupRetrySeconds: options.cleanup.retrySeconds,
        }
      : {}),
  };
}

/** Connects a Temporal client. */
export async function connectClient(
  options: Pick<TemporalOptions, 'address' | 'namespace'>,
): Promise<Client> {
  const connection = await Connection.connect({ address: options.address });
  return new Client({ connection, namespace: options.namespace });
}

/** Options of {@link ensureBuild}. */
export interface EnsureBuildOptions {
  commit: CommitInfo;
  trigger: BuildTrigger;
  /** For tests: continue-as-new after this many history events. */
  maxHistoryEvents?: number;
}

/** The search attributes of a build nobody has deployed yet: its commit, status `queued`. */
export function queuedSearchAttributes(commit: CommitInfo): SearchAttributePair[] {
  const pairs: SearchAttributePair[] = [
    { key: keys.repo, value: commit.repo },
    { key: keys.targetBranch, value: commit.targetBranch },
    { key: keys.commit, value: commit.gitCommit },
    { key: keys.status, value: 'queued' satisfies BuildStatus },
  ];
  if (commit.pr !== null) pairs.push({ key: keys.pr, value: commit.pr });
  return pairs;
}

/**
 * Starts the build workflow of a commit, or returns the running one: the workflow id is the
 * deterministic build name, so a redelivered webhook finds the build it created before.
 */
export async function ensureBuild(
  client: Client,
  options: TemporalOptions,
  build: EnsureBuildOptions,
): Promise<WorkflowHandle> {
  const input: BuildWorkflowInput = {
    commit: build.commit,
    trigger: build.trigger,
    ...buildPolicy(options),
    ...(build.maxHistoryEvents === undefined ? {} : { maxHistoryEvents: build.maxHistoryEvents }),
  };
  return client.workflow.start('buildWorkflow', {
    workflowId: buildName(build.commit),
    taskQueue: options.buildsTaskQueue,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    // Set at start, not by the workflow: until a worker runs it, these are all the API can show
    // of a build (status `queued`, see README "The API").
    typedSearchAttributes: queuedSearchAttributes(build.commit),
  });
}
