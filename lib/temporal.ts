/**
 * Temporal plumbing shared by the processes: connecting a client, and starting (or finding) the
 * workflow of a build so that asking twice for the same commit yields one build.
 */
import { readFileSync } from 'node:fs';
import {
  Client,
  Connection,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  type TLSConfig,
  type WorkflowHandle,
} from '@temporalio/client';
import type { SearchAttributePair } from '@temporalio/common';
import type { BuildStatus, CommitInfo } from '../domain/build.js';
import { fleetWorkflowId, type BuildTrigger, type BuildWorkflowInput } from '../domain/messages.js';
import { buildDetails, buildName, buildSummary } from '../domain/names.js';
import { buildSearchAttributeKeys as keys } from '../domain/search-attributes.js';
import { SettingsError, type Settings } from './settings.js';

/** Where Temporal is and which queues the builds use. */
export interface TemporalOptions {
  address: string;
  namespace: string;
  buildsTaskQueue: string;
  initTaskQueue: string;
  /** Task queue of the image build activity; default `runboat-image-build`. */
  imageBuildTaskQueue?: string;
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
  | 'imageBuildTaskQueue'
  | 'fleetWorkflowId'
  | 'cancelSuperseded'
  | 'cleanupAttempts'
  | 'cleanupRetrySeconds'
> {
  return {
    initTaskQueue: options.initTaskQueue,
    ...(options.imageBuildTaskQueue ? { imageBuildTaskQueue: options.imageBuildTaskQueue } : {}),
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

/**
 * How to reach Temporal: the options `Connection.connect` (clients) and `NativeConnection.connect`
 * (workers) share.
 */
export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig;
  apiKey?: string;
}

/** The settings {@link temporalConnectionOptions} reads. */
export type TemporalConnectionSettings = Pick<
  Settings,
  | 'RUNBOAT_TEMPORAL_ADDRESS'
  | 'RUNBOAT_TEMPORAL_TLS'
  | 'RUNBOAT_TEMPORAL_TLS_CA_FILE'
  | 'RUNBOAT_TEMPORAL_TLS_CERT_FILE'
  | 'RUNBOAT_TEMPORAL_TLS_KEY_FILE'
  | 'RUNBOAT_TEMPORAL_TLS_SERVER_NAME'
  | 'RUNBOAT_TEMPORAL_API_KEY'
  | 'RUNBOAT_TEMPORAL_API_KEY_FILE'
>;

/**
 * The connection options from the settings, the files they name read now: a file that cannot
 * be read is a {@link SettingsError} naming its variable (docs/operations.md, "Temporal over
 * TLS"). TLS is on when asked for, when a TLS file or server name is given, or with an API key.
 */
export function temporalConnectionOptions(
  settings: TemporalConnectionSettings,
  readFile: (path: string) => Buffer = (path) => readFileSync(path),
): TemporalConnectionOptions {
  const read = (variable: keyof TemporalConnectionSettings): Buffer | undefined => {
    const path = settings[variable];
    if (typeof path !== 'string') return undefined;
    try {
      return readFile(path);
    } catch (error) {
      throw new SettingsError(`environment ${variable}=${path}: ${(error as Error).message}`);
    }
  };
  const cert = read('RUNBOAT_TEMPORAL_TLS_CERT_FILE');
  const key = read('RUNBOAT_TEMPORAL_TLS_KEY_FILE');
  if ((cert === undefined) !== (key === undefined)) {
    throw new SettingsError(
      'environment RUNBOAT_TEMPORAL_TLS_CERT_FILE and RUNBOAT_TEMPORAL_TLS_KEY_FILE: set both or neither',
    );
  }
  if (settings.RUNBOAT_TEMPORAL_API_KEY && settings.RUNBOAT_TEMPORAL_API_KEY_FILE) {
    throw new SettingsError(
      'environment RUNBOAT_TEMPORAL_API_KEY and RUNBOAT_TEMPORAL_API_KEY_FILE: set one, not both',
    );
  }
  const ca = read('RUNBOAT_TEMPORAL_TLS_CA_FILE');
  const apiKey =
    settings.RUNBOAT_TEMPORAL_API_KEY ?? read('RUNBOAT_TEMPORAL_API_KEY_FILE')?.toString().trim();
  if (apiKey === '') {
    throw new SettingsError('environment RUNBOAT_TEMPORAL_API_KEY_FILE: the file is empty');
  }
  const serverName = settings.RUNBOAT_TEMPORAL_TLS_SERVER_NAME;
  const tlsOn =
    settings.RUNBOAT_TEMPORAL_TLS ||
    ca !== undefined ||
    cert !== undefined ||
    serverName !== undefined ||
    apiKey !== undefined;
  const tls: TLSConfig | undefined = tlsOn
    ? {
        ...(ca ? { serverRootCACertificate: ca } : {}),
        ...(cert && key ? { clientCertPair: { crt: cert, key } } : {}),
        ...(serverName ? { serverNameOverride: serverName } : {}),
      }
    : undefined;
  return {
    address: settings.RUNBOAT_TEMPORAL_ADDRESS,
    ...(tls ? { tls } : {}),
    ...(apiKey ? { apiKey } : {}),
  };
}

/** Connects a Temporal client (over TLS, with an API key, when `options` say so). */
export async function connectClient(
  options: Pick<TemporalOptions, 'address' | 'namespace'> &
    Partial<Pick<TemporalConnectionOptions, 'tls' | 'apiKey'>>,
): Promise<Client> {
  const connection = await Connection.connect({
    address: options.address,
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.apiKey ? { apiKey: options.apiKey } : {}),
  });
  return new Client({ connection, namespace: options.namespace });
}

/** Options of {@link ensureBuild}. */
export interface EnsureBuildOptions {
  commit: CommitInfo;
  trigger: BuildTrigger;
  /** For tests: continue-as-new after this many history events. */
  maxHistoryEvents?: number;
  /**
   * Refuse (WorkflowExecutionAlreadyStartedError) when a build of this name ran and ended: a poll
   * does not bring back a build undeployed on purpose.
   */
  notAgain?: boolean;
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
    ...(build.notAgain ? { workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE } : {}),
    // Set at start, not by the workflow: until a worker runs it, these are all the API can show
    // of a build (status `queued`, see README "The API").
    typedSearchAttributes: queuedSearchAttributes(build.commit),
    // What the Temporal UI shows of the build (docs/operations.md, "The Temporal UI").
    staticSummary: buildSummary(build.commit),
    staticDetails: buildDetails(build.commit),
  });
}
