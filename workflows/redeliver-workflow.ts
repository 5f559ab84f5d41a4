/**
 * One look at the GitHub App's webhook deliveries, started by its Temporal Schedule
 * (docs/operations.md, "GitHub: App, rate limits, polling", Redelivery): the activity asks GitHub
 * to deliver again the failed ones; the workflow exists so that Temporal runs, retries and records
 * each run.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { BuildActivities } from '../activities/index.js';
import type { RedeliveryResult } from '../activities/redeliver.js';

// A failed run is retried a little; past that, the schedule's next run tries again.
const { redeliverFailedDeliveries } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2s', maximumInterval: '30s', maximumAttempts: 3 },
});

/** Redelivers the App's failed webhook deliveries of the last 24 hours once. */
export async function redeliverWorkflow(): Promise<RedeliveryResult> {
  return redeliverFailedDeliveries();
}
