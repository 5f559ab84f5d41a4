/**
 * Redelivery of the GitHub App's failed webhook deliveries (docs/operations.md, "GitHub: App, rate
 * limits, polling"): the deliveries of the last 24 hours are read from GitHub, and each one that
 * never got a 2xx and failed for a reason a retry can fix (no connection, a 5xx) is asked again.
 * Built by `createRedeliveryActivities(deps)`, joined in `activities/index.ts`.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { isTransientGitHubError, type HookDelivery } from '../lib/github.js';
import type { ActivityDeps } from './index.js';

/** What the redelivery activity needs from the process that runs it. */
export type RedeliveryActivityDeps = Pick<ActivityDeps, 'github' | 'logger'>;

/** How far back deliveries are looked at. */
export const REDELIVERY_WINDOW_MS = 24 * 3600_000;
/** A delivery attempted this many times is not asked again. */
export const REDELIVERY_MAX_ATTEMPTS = 5;
/** At most this many guids are named in a result (the counts are whole). */
const GUIDS_LISTED = 50;

/** What one look at the deliveries did. */
export interface RedeliveryResult {
  /** Delivery attempts of the window. */
  deliveries: number;
  /** Distinct deliveries (guids) among them. */
  guids: number;
  /** Guids with an attempt answered 2xx. */
  delivered: number;
  /** Guids failed for good: a 4xx (or other non-retryable answer), or attempted too often. */
  givenUp: number;
  /** Guids asked again, by this run (at most 50 named). */
  redelivered: string[];
  redeliveredCount: number;
  /** Guids whose redelivery GitHub refused or could not take (tried again next run). */
  failed: string[];
  /** Milliseconds the run took. */
  ms: number;
}

/** Why a guid is asked again or not; `redeliver` with the attempt to deliver again. */
export type DeliveryVerdict =
  | { verdict: 'delivered' }
  | { verdict: 'given-up'; reason: 'refused' | 'attempts' }
  | { verdict: 'redeliver'; attempt: HookDelivery };

/** A retry can fix it: no connection (0) or a server error (5xx). */
const retryable = (status: number) => status === 0 || status >= 500;

/** What to do with one guid's attempts (any order). */
export function deliveryVerdict(attempts: readonly HookDelivery[]): DeliveryVerdict {
  if (attempts.some((a) => a.statusCode >= 200 && a.statusCode < 300)) {
    return { verdict: 'delivered' };
  }
  if (!attempts.every((a) => retryable(a.statusCode))) {
    return { verdict: 'given-up', reason: 'refused' };
  }
  if (attempts.length >= REDELIVERY_MAX_ATTEMPTS)
    return { verdict: 'given-up', reason: 'attempts' };
  const newest = attempts.reduce((a, b) =>
    b.deliveredAt.getTime() > a.deliveredAt.getTime() ||
    (b.deliveredAt.getTime() === a.deliveredAt.getTime() && b.id > a.id)
      ? b
      : a,
  );
  return { verdict: 'redeliver', attempt: newest };
}

/** Builds the redelivery activity. */
export function createRedeliveryActivities(deps: RedeliveryActivityDeps) {
  const log = deps.logger.child({ component: 'redeliver' });
  return {
    /** Asks GitHub to deliver again each failed delivery of the App that a retry can fix. */
    async redeliverFailedDeliveries(): Promise<RedeliveryResult> {
      const started = Date.now();
      const result: RedeliveryResult = {
        deliveries: 0,
        guids: 0,
        delivered: 0,
        givenUp: 0,
        redelivered: [],
        redeliveredCount: 0,
        failed: [],
        ms: 0,
      };
      const github = deps.github;
      if (!github?.isApp) return result;
      let deliveries: HookDelivery[];
      try {
        deliveries = await github.listHookDeliveries(new Date(started - REDELIVERY_WINDOW_MS));
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        log.warn({ err: message }, 'hook deliveries not listed');
        // A 401, 403 or 404 only an operator can fix: the schedule's next run tries again.
        if (!isTransientGitHubError(error)) throw ApplicationFailure.nonRetryable(message);
        throw error;
      }
      result.deliveries = deliveries.length;
      const byGuid = new Map<string, HookDelivery[]>();
      for (const delivery of deliveries) {
        const attempts = byGuid.get(delivery.guid) ?? [];
        attempts.push(delivery);
        byGuid.set(delivery.guid, attempts);
      }
      result.guids = byGuid.size;
      const ctx = Context.current();
      for (const [guid, attempts] of byGuid) {
        const verdict = deliveryVerdict(attempts);
        if (verdict.verdict === 'delivered') {
          result.delivered++;
          continue;
        }
        if (verdict.verdict === 'given-up') {
          result.givenUp++;
          continue;
        }
        const { attempt } = verdict;
        try {
          await github.redeliverHookDelivery(attempt.id);
          result.redeliveredCount++;
          if (result.redelivered.length < GUIDS_LISTED) result.redelivered.push(guid);
          log.info(
            { guid, id: attempt.id, event: attempt.event, status: attempt.statusCode },
            'hook delivery redelivered',
          );
        } catch (error) {
          if (result.failed.length < GUIDS_LISTED) result.failed.push(guid);
          log.warn({ guid, id: attempt.id, err: error }, 'hook delivery not redelivered');
        }
        ctx.heartbeat();
      }
      result.ms = Date.now() - started;
      const level = result.redeliveredCount || result.failed.length ? 'info' : 'debug';
      log[level]({ ...result }, 'hook deliveries looked at');
      return result;
    },
  };
}
