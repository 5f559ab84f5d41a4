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
import type { CommitInfo } from '../domain/build.js';
import { fleetWorkflowId, type BuildTrigger, type BuildWorkflowInput } from '../domain/messages.js';
import { buildName } from '../domain/names.js';

/** Where Temporal is and which queues the builds use. */
export interface TemporalOptions {
  address: string;
  namespace: string;
  buildsTaskQueue: string;
  initTaskQueue: string;
  /** Newer commits cancel builds of the same branch or PR still queued for init. */
  cancelSuperseded?: boolean;
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
    initTaskQueue: options.initTaskQueue,
    fleetWorkflowId: fleetWorkflowId(options.buildsTaskQueue),
    cancelSuperseded: options.cancelSuperseded ?? false,
    ...(build.maxHistoryEvents === undefined ? {} : { maxHistoryEvents: build.maxHistoryEvents }),
  };
  return client.workflow.start('buildWorkflow', {
    workflowId: buildName(build.commit),
    taskQueue: options.buildsTaskQueue,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
  });
}
