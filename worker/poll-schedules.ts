/**
 * The Temporal Schedules of the polling trigger (docs/operations.md, "Polling"): one per repo named
 * literally in the repos file, each starting `pollRepoWorkflow` at the interval. Made idempotent at
 * every builds worker start: created or updated to the current interval, and removed for repos no
 * longer configured (or all of them when polling is off).
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptionsAction,
} from '@temporalio/client';
import type { Logger } from '../lib/logger.js';
import type { RepoConfig } from '../lib/settings.js';

/** Options of {@link syncPollSchedules}. */
export interface PollSchedulesOptions {
  client: Client;
  /** The builds task queue: the polls run there, and it keeps installations apart. */
  taskQueue: string;
  repos: readonly RepoConfig[];
  /** Seconds between two polls of a repo; 0: no schedules. */
  intervalSeconds: number;
  /** Poll each repo once right away (polling as the trigger), not only after one interval. */
  pollNow: boolean;
  logger: Logger;
}

/** The prefix of the schedule ids of one builds task queue. */
export function pollScheduleId(taskQueue: string, repo: string): string {
  return `runboat-poll:${taskQueue}:${repo.toLowerCase()}`;
}

/** Repos named literally (`owner/name`) in the repos file, lower-case, once each. */
export function literalRepos(repos: readonly RepoConfig[]): string[] {
  const names = repos.map((entry) => entry.repo).filter((repo) => /^[\w-]+\/[\w.-]+$/.test(repo));
  return [...new Set(names.map((repo) => repo.toLowerCase()))].sort();
}

/** Creates, updates and removes the poll schedules; returns the repos polled. */
export async function syncPollSchedules(options: PollSchedulesOptions): Promise<string[]> {
  const { client, taskQueue, intervalSeconds } = options;
  const log = options.logger.child({ component: 'poll-schedules' });
  const wanted = intervalSeconds > 0 ? literalRepos(options.repos) : [];
  const prefix = pollScheduleId(taskQueue, '');
  const existing: string[] = [];
  for await (const schedule of client.schedule.list()) {
    if (schedule.scheduleId.startsWith(prefix)) existing.push(schedule.scheduleId);
  }
  // Phased from now: the first scheduled poll comes one whole interval after this start (an
  // interval alone is aligned to the epoch, and could come at once).
  const offset = Math.floor(Date.now() / 1000) % Math.max(intervalSeconds, 1);
  const spec = { intervals: [{ every: `${intervalSeconds}s`, offset: `${offset}s` }] };
  for (const repo of wanted) {
    const scheduleId = pollScheduleId(taskQueue, repo);
    const action: ScheduleOptionsAction = {
      type: 'startWorkflow',
      workflowType: 'pollRepoWorkflow',
      workflowId: `runboat-poll:${taskQueue}:${repo}`,
      taskQueue,
      args: [{ repo }],
    };
    try {
      await client.schedule.create({
        scheduleId,
        spec,
        action,
        // A poll still running when the next is due: the next is skipped, never queued.
        policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
        state: { triggerImmediately: options.pollNow },
        memo: { repo },
      });
      log.info({ repo, scheduleId, intervalSeconds }, 'poll schedule created');
    } catch (error) {
      if (!(error instanceof ScheduleAlreadyRunning)) throw error;
      const handle = client.schedule.getHandle(scheduleId);
      await handle.update((previous) => ({ ...previous, spec, action }));
      if (options.pollNow) await handle.trigger(ScheduleOverlapPolicy.SKIP);
      log.info({ repo, scheduleId, intervalSeconds }, 'poll schedule updated');
    }
  }
  const keep = new Set(wanted.map((repo) => pollScheduleId(taskQueue, repo)));
  for (const scheduleId of existing) {
    if (keep.has(scheduleId)) continue;
    try {
      await client.schedule.getHandle(scheduleId).delete();
      log.info({ scheduleId }, 'poll schedule removed: repo no longer polled');
    } catch (error) {
      if (!(error instanceof ScheduleNotFoundError)) throw error;
    }
  }
  return wanted;
}
