/**
 * What the API may change, and only through Temporal: ask for a build (start or find its
 * workflow), and send it the updates start, stop, reset and undeploy. Update failures are mapped
 * to the API's errors (an invalid transition is a 409 at once, thanks to the validators).
 */
import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateStage,
  type Client,
} from '@temporalio/client';
import type { CommitInfo } from '../domain/build.js';
import {
  INVALID_TRANSITION,
  resetUpdate,
  startUpdate,
  stopUpdate,
  undeployUpdate,
  type BuildTrigger,
} from '../domain/messages.js';
import { buildName } from '../domain/names.js';
import { BuildNotFoundError, InvalidTransitionError, UnsupportedRepoError } from '../lib/errors.js';
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
   * Sends an update. start and stop wait until applied; reset and undeploy return once the
   * workflow accepted them (undeploying takes as long as the cleanup Job).
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
}

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
      await ensureBuild(options.client, options.temporal, { commit, trigger });
      return buildName(commit);
    },
    async transition(name, transition) {
      const handle = options.client.workflow.getHandle(name);
      try {
        if (transition === 'start' || transition === 'stop') {
          await handle.executeUpdate(updates[transition]);
        } else {
          await handle.startUpdate(updates[transition], {
            waitForStage: WorkflowUpdateStage.ACCEPTED,
          });
        }
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) throw new BuildNotFoundError(name);
        if (error instanceof WorkflowUpdateFailedError) {
          const cause = error.cause as { type?: string; message?: string } | undefined;
          if (cause?.type === INVALID_TRANSITION) {
            throw new InvalidTransitionError(cause.message ?? `cannot ${transition} ${name}`);
          }
        }
        throw error;
      }
    },
    async branchHead(repo, branch) {
      return options.github?.branchHead(repo, branch);
    },
  };
}
