import {
  ActivityFailure,
  ApplicationFailure,
  RetryState,
  TimeoutFailure,
} from '@temporalio/common';
import { TimeoutType } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { deriveStatus } from '../../domain/build.js';
import { isoTime } from '../../domain/build-view.js';
import { failureReason, rootCause } from '../../domain/failures.js';

/** An activity failure as the workflow receives it: the real failure is its cause. */
function fromActivity(cause: Error): ActivityFailure {
  return new ActivityFailure(
    'Activity task failed',
    'initialize',
    '1',
    RetryState.NON_RETRYABLE_FAILURE,
    'worker',
    cause,
  );
}

describe('failure reasons', () => {
  it('name the root cause and its type, never "Activity task failed"', () => {
    const error = fromActivity(
      ApplicationFailure.nonRetryable(
        'secret env PGPASSWORD: the worker has no environment variable X',
        'MissingSecret',
      ),
    );
    expect(rootCause(error)).toEqual({
      type: 'MissingSecret',
      message: 'secret env PGPASSWORD: the worker has no environment variable X',
    });
    expect(failureReason(error)).toBe(
      'MissingSecret: secret env PGPASSWORD: the worker has no environment variable X',
    );
  });

  it('go down the whole chain', () => {
    const deep = ApplicationFailure.create({
      message: 'outer',
      type: 'Outer',
      cause: ApplicationFailure.nonRetryable('jobs.batch is forbidden', 'KubernetesRejected'),
    });
    expect(failureReason(fromActivity(deep))).toBe('KubernetesRejected: jobs.batch is forbidden');
  });

  it('name a timeout', () => {
    const timeout = new TimeoutFailure(
      'activity StartToClose timeout',
      undefined,
      TimeoutType.START_TO_CLOSE,
    );
    expect(failureReason(fromActivity(timeout))).toBe(
      'TimeoutFailure: activity StartToClose timeout',
    );
  });

  it('keep a plain error or a string as it is', () => {
    expect(failureReason(new Error('plain'))).toBe('plain');
    expect(failureReason('text')).toBe('text');
  });
});

describe('times in the API', () => {
  it('share one format: ISO 8601 UTC with milliseconds', () => {
    expect(isoTime('2026-11-23T05:52:28Z')).toBe('2026-11-23T05:52:28.000Z');
    expect(isoTime('2026-11-23T06:52:28.123456+01:00')).toBe('2026-11-23T05:52:28.123Z');
    expect(isoTime(new Date(0))).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTime(undefined)).toBeNull();
    expect(isoTime('not a time')).toBe('not a time');
  });
});

describe('the status of a Deployment', () => {
  const stopped = {
    replicas: 0,
    readyReplicas: 0,
    annotations: { 'runboat/init-status': 'succeeded' },
  };
  it('is undeploying once its label says so, before the Deployment is deleted', () => {
    expect(deriveStatus(stopped)).toBe('stopped');
    expect(deriveStatus({ ...stopped, statusLabel: 'undeploying' })).toBe('undeploying');
    expect(deriveStatus({ ...stopped, replicas: 1, statusLabel: 'undeploying' })).toBe(
      'undeploying',
    );
  });
});
