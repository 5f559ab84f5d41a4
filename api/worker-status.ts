/**
 * Whether workers poll the task queues of the builds, from Temporal's task queue description.
 * With no worker on the builds queue nothing is deployed, with none on the init queue nothing
 * is initialized, with none on the image build queue (reported once a repo entry builds images)
 * builds stay `building`: Temporal keeps the work queued and says nothing, so the API and the UI
 * say it (README, "The API").
 */
import type { Client } from '@temporalio/client';

/** A role of the workers, by the task queue it polls. */
export type QueueRole = 'builds' | 'init' | 'image-build';

/** One poller of a task queue, as Temporal reports it. */
export interface QueuePoller {
  identity: string;
  /** The last time it polled (ISO 8601). */
  last_access_time: string | null;
}

/** One task queue and its pollers. */
export interface QueueReport {
  role: QueueRole;
  task_queue: string;
  /** Whether a worker polled it lately; null when Temporal does not answer. */
  polling: boolean | null;
  /** The workers that polled it lately. */
  pollers: QueuePoller[];
}

/** The workers as `GET /api/v1/status` shows them. */
export interface WorkerStatus {
  /** Whether Temporal answered; when not, `error` says why and `polling` is null. */
  temporal_reachable: boolean;
  error?: string;
  queues: QueueReport[];
  /** What a user must know, one sentence each (the UI shows them in a banner). */
  warnings: string[];
  /** When Temporal was asked (ISO 8601); the answer is reused for a few seconds. */
  checked_at: string;
}

/** Options of {@link createWorkerStatus}. */
export interface WorkerStatusOptions {
  client: Client;
  namespace: string;
  /** The queues to report; `image-build` only when some repo entry builds an image. */
  queues: Record<'builds' | 'init', string> & { 'image-build'?: string };
  /** How long an answer is reused. */
  cacheMs?: number;
  /**
   * Up to this age (default 3 × `cacheMs`) an answer is still given at once while a fresh one
   * is asked; an older one is not, the caller waits for the fresh one.
   */
  staleMs?: number;
  /**
   * A poller counts as polling when it polled within this time. Temporal keeps a poller in the
   * description for minutes after its worker died; a live worker polls again at least once a
   * minute (the server ends an idle long poll after 60 s).
   */
  liveWithinMs?: number;
  /** Longest wait for Temporal's answer. */
  timeoutMs?: number;
  now?: () => number;
}

// temporal.api.enums.v1.TaskQueueKind / TaskQueueType (the proto package is not a dependency).
const TASK_QUEUE_KIND_NORMAL = 1;
const TASK_QUEUE_TYPE_WORKFLOW = 1;
const TASK_QUEUE_TYPE_ACTIVITY = 2;

/** What each role polls for: builds run workflows (and short activities), init the init activity. */
const taskTypes: Record<QueueRole, number> = {
  builds: TASK_QUEUE_TYPE_WORKFLOW,
  init: TASK_QUEUE_TYPE_ACTIVITY,
  'image-build': TASK_QUEUE_TYPE_ACTIVITY,
};

/** The banner line of a queue nobody polls. */
export function noWorkerWarning(role: QueueRole, taskQueue: string): string {
  const stalled = {
    builds: 'nothing is deployed, started or stopped',
    init: 'no build is initialized',
    'image-build': 'no image is built: builds with an image build stay building',
  }[role];
  return `No worker is polling the ${role} task queue “${taskQueue}”: changes are queued until a worker runs (${stalled}).`;
}

function timestampMs(ts: { seconds?: unknown; nanos?: number | null } | null | undefined) {
  if (!ts || ts.seconds === undefined || ts.seconds === null) return undefined;
  return Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
}

/**
 * Returns a function answering the worker status, asking Temporal at most once per `cacheMs`
 * (concurrent callers share one request), and never throwing: an unreachable Temporal is a
 * status too. An answer up to `staleMs` old is given at once while the next one is asked, so
 * that no request of `GET /api/v1/status` waits for Temporal once the API has an answer.
 */
export function createWorkerStatus(options: WorkerStatusOptions): () => Promise<WorkerStatus> {
  const cacheMs = options.cacheMs ?? 5000;
  const staleMs = options.staleMs ?? 3 * cacheMs;
  const liveWithinMs = options.liveWithinMs ?? 90_000;
  const timeoutMs = options.timeoutMs ?? 3000;
  const now = options.now ?? Date.now;
  const roles = Object.keys(options.queues) as QueueRole[];
  let answered: { at: number; status: WorkerStatus } | undefined;
  let asking: Promise<WorkerStatus> | undefined;

  const describe = async (role: QueueRole): Promise<QueueReport> => {
    const taskQueue = options.queues[role] ?? '';
    const response = await options.client.connection.withDeadline(now() + timeoutMs, () =>
      options.client.workflowService.describeTaskQueue({
        namespace: options.namespace,
        taskQueue: { name: taskQueue, kind: TASK_QUEUE_KIND_NORMAL },
        taskQueueType: taskTypes[role],
      }),
    );
    const since = now() - liveWithinMs;
    const pollers = (response.pollers ?? [])
      .map((poller) => ({ poller, at: timestampMs(poller.lastAccessTime) }))
      .filter(({ at }) => at !== undefined && at >= since)
      .map(({ poller, at }) => ({
        identity: poller.identity ?? '',
        last_access_time: at === undefined ? null : new Date(at).toISOString(),
      }));
    return { role, task_queue: taskQueue, polling: pollers.length > 0, pollers };
  };

  const ask = async (): Promise<WorkerStatus> => {
    const checkedAt = new Date(now()).toISOString();
    try {
      const queues = await Promise.all(roles.map(describe));
      return {
        temporal_reachable: true,
        queues,
        warnings: queues
          .filter((queue) => !queue.polling)
          .map((queue) => noWorkerWarning(queue.role, queue.task_queue)),
        checked_at: checkedAt,
      };
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return {
        temporal_reachable: false,
        error: reason,
        queues: roles.map((role) => ({
          role,
          task_queue: options.queues[role] ?? '',
          polling: null,
          pollers: [],
        })),
        warnings: [`Temporal does not answer (${reason}): builds cannot be asked for or changed.`],
        checked_at: checkedAt,
      };
    }
  };

  const refresh = (): Promise<WorkerStatus> => {
    if (asking) return asking;
    const at = now();
    asking = ask().then((status) => {
      answered = { at, status };
      asking = undefined;
      return status;
    });
    return asking;
  };

  return () => {
    const age = answered ? now() - answered.at : Infinity;
    if (answered && age < cacheMs) return Promise.resolve(answered.status);
    if (answered && age < staleMs) {
      void refresh();
      return Promise.resolve(answered.status);
    }
    return refresh();
  };
}
