/**
 * The Temporal Schedules of the polling trigger (docs/operations.md, "Polling"): one per repo named
 * literally in the repos file, each starting `pollRepoWorkflow` at the interval. Made idempotent at
 * every builds worker start: created or updated to the current interval, and removed for repos no
 * longer configured (or all of them when polling is off). Likewise the one schedule of the
 * redelivery of the GitHub App's failed webhook deliveries (`redeliverWorkflow`).
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

/** One schedule that starts one workflow at an interval (see {@link upsertSchedule}). */
interface IntervalSchedule {
  client: Client;
  scheduleId: string;
  intervalSeconds: number;
  action: ScheduleOptionsAction;
  /** Start one run right away, not only after one interval. */
  runNow: boolean;
  memo?: Record<string, unknown>;
  log: Logger;
}

/**
 * Creates the schedule, or updates the one there to this interval and action. Phased from now: the
 * first scheduled run comes one whole interval after this start (an interval alone is aligned to
 * the epoch, and could come at once). A run still going when the next is due: the next is
 * skipped, never queued.
 */
async function upsertSchedule(schedule: IntervalSchedule): Promise<void> {
  const { client, scheduleId, intervalSeconds, action, log } = schedule;
  const offset = Math.floor(Date.now() / 1000) % Math.max(intervalSeconds, 1);
  const spec = { intervals: [{ every: `${intervalSeconds}s`, offset: `${offset}s` }] };
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
      state: { triggerImmediately: schedule.runNow },
      ...(schedule.memo ? { memo: schedule.memo } : {}),
    });
    log.info({ ...schedule.memo, scheduleId, intervalSeconds }, 'schedule created');
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
    const handle = client.schedule.getHandle(scheduleId);
    await handle.update((previous) => ({ ...previous, spec, action }));
    if (schedule.runNow) await handle.trigger(ScheduleOverlapPolicy.SKIP);
    log.info({ ...schedule.memo, scheduleId, intervalSeconds }, 'schedule updated');
  }
}

/** Deletes the schedule (one already gone is fine). */
async function removeSchedule(client: Client, scheduleId: string, log: Logger, why: string) {
  try {
    await client.schedule.getHandle(scheduleId).delete();
    log.info({ scheduleId }, `schedule removed: ${why}`);
  } catch (error) {
    if (!(error instanceof ScheduleNotFoundError)) throw error;
  }
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
  for (const repo of wanted) {
    await upsertSchedule({
      client,
      scheduleId: pollScheduleId(taskQueue, repo),
      intervalSeconds,
      action: {
        type: 'startWorkflow',
        workflowType: 'pollRepoWorkflow',
        workflowId: `runboat-poll:${taskQueue}:${repo}`,
        taskQueue,
        args: [{ repo }],
      },
      runNow: options.pollNow,
      memo: { repo },
      log,
    });
  }
  const keep = new Set(wanted.map((repo) => pollScheduleId(taskQueue, repo)));
  for (const scheduleId of existing) {
    if (!keep.has(scheduleId))
      await removeSchedule(client, scheduleId, log, 'repo no longer polled');
  }
  return wanted;
}

/** Options of {@link syncRedeliverySchedule}. */
export interface RedeliveryScheduleOptions {
  client: Client;
  /** The builds task queue: the runs go there, and it keeps installations apart. */
  taskQueue: string;
  /** Whether the GitHub client is an App (only an App can list its hook deliveries). */
  isApp: boolean;
  /** Seconds between two runs (`RUNBOAT_GITHUB_REDELIVER_SECONDS`); 0: no schedule. */
  intervalSeconds: number;
  logger: Logger;
}

/** The id of the redelivery schedule of one builds task queue. */
export function redeliveryScheduleId(taskQueue: string): string {
  return `runboat-redeliver:${taskQueue}`;
}

/**
 * The schedule that redelivers the App's failed webhook deliveries (docs/operations.md,
 * Redelivery): created or updated with a run right away when the client is an App and the
 * interval is set, removed otherwise. Returns whether it is there.
 */
export async function syncRedeliverySchedule(options: RedeliveryScheduleOptions): Promise<boolean> {
  const { client, taskQueue, intervalSeconds } = options;
  const log = options.logger.child({ component: 'redelivery-schedule' });
  const scheduleId = redeliveryScheduleId(taskQueue);
  if (!options.isApp || intervalSeconds <= 0) {
    await removeSchedule(
      client,
      scheduleId,
      log,
      options.isApp ? 'interval 0' : 'not a GitHub App',
    );
    return false;
  }
  await upsertSchedule({
    client,
    scheduleId,
    intervalSeconds,
    action: {
      type: 'startWorkflow',
      workflowType: 'redeliverWorkflow',
      workflowId: scheduleId,
      taskQueue,
      args: [],
    },
    runNow: true,
    log,
  });
  return true;
}
