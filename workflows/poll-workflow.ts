/**
 * One poll of one repo, started by its Temporal Schedule (docs/operations.md, "Polling"): the
 * activity does the work; the workflow exists so that Temporal runs, retries and records each poll.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { BuildActivities } from '../activities/index.js';
import type { PollResult } from '../activities/poll.js';

// A failed poll is retried a little; past that, the schedule's next poll tries again.
const { pollRepo } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2s', maximumInterval: '30s', maximumAttempts: 3 },
});

/** Input of {@link pollRepoWorkflow}. */
export interface PollRepoInput {
  /** `owner/name`. */
  repo: string;
}

/** Polls one repo's branches and open pull requests once. */
export async function pollRepoWorkflow(input: PollRepoInput): Promise<PollResult> {
  return pollRepo(input);
}
