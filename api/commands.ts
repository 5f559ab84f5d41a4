/**
 * What the API may change, and only through Temporal: ask for a build (start or find its
 * workflow), and send it the updates start, stop, reset and undeploy. Update failures are mapped
 * to the API's errors (an invalid transition is a 409 at once, thanks to the validators).
 */
import {
  isGrpcServiceError,
  WorkflowNotFoundError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BuildStatus, CommitInfo } from '../domain/build.js';
import {
  allowedFrom,
  INVALID_TRANSITION,
  resetUpdate,
  startUpdate,
  stopUpdate,
  undeployUpdate,
  type BuildTrigger,
} from '../domain/messages.js';
import { buildName } from '../domain/names.js';
import {
  BuildNotFoundError,
  ClientError,
  InvalidTransitionError,
  UnsupportedRepoError,
} from '../lib/errors.js';
import type { GitHubClient } from '../lib/github.js';
import { findRepoConfig, type RepoConfig } from '../lib/settings.js';
import { ensureBuild, type TemporalOptions } from '../lib/temporal.js';

/** A transition the API can ask of a build. */
export type Transition = 'start' | 'stop' | 'reset' | 'undeploy';

/** The API's write side. */
export interface BuildCommands {
  /** Starts (or finds) the build of a commit; refuses repos and branches not configured. */
  trigger(commit: CommitInfo, trigger: BuildTrigger): Promise<string>;
  /**
   * Sends an update and returns once the workflow has taken it: start, stop
   * and reset once applied, undeploy once under way (the cleanup takes its time). A refused
   * transition is an {@link InvalidTransitionError} with the validator's reason (HTTP 409).
   */
  transition(name: string, transition: Transition): Promise<void>;
  /** Whether the repo and branch are configured for builds. */
  supports(repo: string, branch: string): boolean;
  /** Head SHA of a branch, from GitHub. */
  branchHead(repo: string, branch: string): Promise<string | undefined>;
}

/** Options of {@link createBuildCommands}. */
export interface BuildCommandsOptions {
  client: Client;
  temporal: TemporalOptions;
  repos: () => readonly RepoConfig[];
  github?: GitHubClient | undefined;
  /** How long an update may take before the API gives up on it (default 30 s). */
  updateTimeoutMs?: number;
  /** The status the build's Deployment shows (the API's index), to catch up with the workflow. */
  shown?: (name: string) => BuildStatus | undefined;
  /** How long a refused start or stop is asked again while the build shows it possible (10 s). */
  catchUpMs?: number;
}

/**
 * A start or stop the workflow refused while the Deployment already shows the build stopped or
 * running: its init Job completed and the init activity showed it `stopped` before the workflow
 * learnt it (activities/mirror-ahead.ts). Asked again until the workflow has caught up, for at
 * most this long, so that what the API lists is what it accepts.
 */
const CATCH_UP_MS = 10_000;
const CATCH_UP_EVERY_MS = 50;

/** gRPC status DEADLINE_EXCEEDED. */
const GRPC_DEADLINE_EXCEEDED = 4;

const updates = {
  start: startUpdate,
  stop: stopUpdate,
  reset: resetUpdate,
  undeploy: undeployUpdate,
} as const;

/** The Temporal implementation of {@link BuildCommands}. */
export function createBuildCommands(options: BuildCommandsOptions): BuildCommands {
  const supports = (repo: string, branch: string) =>
    findRepoConfig(options.repos(), repo, branch) !== undefined;
  return {
    supports,
    async trigger(commit, trigger) {
      if (!supports(commit.repo, commit.targetBranch)) {
        throw new UnsupportedRepoError(commit.repo, commit.targetBranch);
      }
      // A deadline, so that an unreachable Temporal answers 503 soon (api/app.ts), not after
      // the client's own retries.
      await options.client.withDeadline(Date.now() + (options.updateTimeoutMs ?? 30_000), () =>
        ensureBuild(options.client, options.temporal, { commit, trigger }),
      );
      return buildName(commit);
    },
    async transition(name, transition) {
      const handle = options.client.workflow.getHandle(name);
      const timeoutMs = options.updateTimeoutMs ?? 30_000;
      const catchUpUntil = Date.now() + Math.min(options.catchUpMs ?? CATCH_UP_MS, timeoutMs);
      const behind = () =>
        (transition === 'start' || transition === 'stop') &&
        allowedFrom[transition].some((status) => status === options.shown?.(name)) &&
        Date.now() < catchUpUntil;
      for (;;) {
        try {
          // Waiting for the outcome, never just the acceptance: a validator's refusal is only
          // known from it (docs/failures.md). A deadline, so that no request hangs on a build
          // whose worker is away.
          await options.client.withDeadline(Date.now() + timeoutMs, () =>
            handle.executeUpdate(updates[transition]),
          );
          return;
        } catch (error) {
          if (refusal(error) === undefined || !behind()) {
            throw updateError(error, name, transition, timeoutMs);
          }
        }
        await sleep(CATCH_UP_EVERY_MS);
      }
    },
    async branchHead(repo, branch) {
      return options.github?.branchHead(repo, branch);
    },
  };
}

/** The validator's refusal of an update (its reason), or undefined for any other failure. */
function refusal(error: unknown): string | undefined {
  if (!(error instanceof WorkflowUpdateFailedError)) return undefined;
  const cause = error.cause as { type?: string; message?: string } | undefined;
  return cause?.type === INVALID_TRANSITION ? (cause.message ?? '') : undefined;
}

/** The API's error for an update that failed. */
function updateError(error: unknown, name: string, transition: Transition, timeoutMs: number) {
  if (error instanceof WorkflowNotFoundError) return new BuildNotFoundError(name);
  const timedOut =
    error instanceof WorkflowUpdateRPCTimeoutOrCancelledError ||
    (isGrpcServiceError(error) && error.code === GRPC_DEADLINE_EXCEEDED);
  if (timedOut) {
    return new ClientError(
      `build ${name} did not answer ${transition} within ${timeoutMs / 1000} s: is a worker of the builds role running? Try again once one is`,
      503,
    );
  }
  const refused = refusal(error);
  if (refused !== undefined) {
    return new InvalidTransitionError(refused || `cannot ${transition} ${name}`);
  }
  return error;
}
