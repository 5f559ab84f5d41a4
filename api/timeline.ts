/**
 * The timeline of a build: its workflow's history told as a person would (queued, init started,
 * init ended, started, stopped, reset, evicted by the fleet and why, drift seen, undeployed),
 * for the build page and `GET /api/v1/builds/{name}/timeline` (docs/operations.md, "The build
 * page"). Read from Temporal, newest events first and within a budget: a build that lived for
 * months has a long history, and its page shows only the latest of it.
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { BuildNotFoundError } from '../lib/errors.js';
import type { DriftEvent } from '../domain/messages.js';
import { buildSearchAttributeKeys } from '../domain/search-attributes.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** What happened, as the page styles it. */
export const timelineKinds = [
  'queued',
  'status',
  'init',
  'request',
  'refused',
  'evicted',
  'drift',
  'step',
  'failure',
  'wait',
  'run',
  'ended',
] as const;

/** What happened, as the page styles it. */
export type TimelineKind = (typeof timelineKinds)[number];

/** One line of a build's timeline. */
export interface TimelineEntry {
  /** ISO time of the event. */
  time: string;
  kind: TimelineKind;
  title: string;
  detail?: string;
}

/** A build's timeline, oldest entry first. */
export interface Timeline {
  build: string;
  /** The build's workflow: its id, and its page in the Temporal UI (null without the setting). */
  workflow: { id: string; link: string | null };
  entries: TimelineEntry[];
  /** True when older history was left out (budget or entry cap). */
  truncated: boolean;
}

/** Bounds of the history read for one timeline. */
export interface TimelineLimits {
  /** Entries answered at most (the newest). */
  maxEntries: number;
  /** History events read at most, all runs together (newest first). */
  maxEvents: number;
}

/** The default {@link TimelineLimits}. */
export const defaultTimelineLimits: TimelineLimits = { maxEntries: 200, maxEvents: 3000 };

type Long = number | { toNumber(): number };

function num(value: Long | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

function isoTime(event: HistoryEvent): string {
  const time = event.eventTime;
  if (!time) return new Date(0).toISOString();
  return new Date(num(time.seconds) * 1000 + Math.floor((time.nanos ?? 0) / 1e6)).toISOString();
}

/** A payload's value, or undefined when it cannot be read (a codec this process lacks). */
function decode(payload: Payload | null | undefined): unknown {
  if (!payload) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(payload);
  } catch {
    return undefined;
  }
}

function first(payloads: { payloads?: Payload[] | null } | null | undefined): unknown {
  return decode(payloads?.payloads?.[0]);
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** `12.3 s`, `4 min 5 s` */
function duration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return seconds ? `${minutes} min ${seconds} s` : `${minutes} min`;
}

function protoSeconds(value: { seconds?: Long | null; nanos?: number | null } | null | undefined) {
  return value ? num(value.seconds) + (value.nanos ?? 0) / 1e9 : 0;
}

/** Why the fleet asked for an eviction (workflows/fleet-workflow.ts; docs/architecture.md). */
const evictions: Record<string, { title: string; detail: string }> = {
  stop: {
    title: 'stopped by the fleet',
    detail:
      'more builds were started than RUNBOAT_MAX_STARTED allows: this one was the least recently started or stopped',
  },
  undeploy: {
    title: 'undeployed by the fleet',
    detail:
      'more builds were deployed than RUNBOAT_MAX_DEPLOYED allows: this one was among the oldest stopped or failed, and not the newest of a sticky branch',
  },
  supersede: {
    title: 'superseded',
    detail: 'a newer commit of its branch or pull request came while it still waited for its init',
  },
};

/** Who asked for a build (domain/messages.ts, BuildTrigger). */
function askedBy(trigger: { kind?: string; id?: string } | undefined): string {
  const id = trigger?.id;
  switch (trigger?.kind) {
    case 'webhook':
      return `asked for by a GitHub webhook${id ? ` (delivery ${id})` : ''}`;
    case 'api':
      return `asked for through the API${id ? ` (request ${id})` : ''}`;
    case 'sticky':
      return 'asked for by the fleet: the head commit of a sticky branch';
    case 'poll':
      return 'asked for by polling GitHub: a new head commit';
    default:
      return `asked for by ${trigger?.kind ?? 'someone unknown'}${id ? ` (${id})` : ''}`;
  }
}

/** What the watcher saw (watcher/): a drift of the cluster from what the workflow did. */
function driftDetail(event: Partial<DriftEvent> | undefined): string {
  switch (event?.kind) {
    case 'deployment-deleting':
      return 'its Deployment is being deleted (by hand?): undeploying, so that the cleanup runs';
    case 'deployment-gone':
      return 'its Deployment is gone: undeploying, so that the cleanup runs';
    case 'scaled':
      return `its Deployment was scaled by hand to ${event.replicas ?? '?'}: taken as a ${(event.replicas ?? 0) > 0 ? 'start' : 'stop'}`;
    case 'init-job-gone':
      return 'its init Job is gone';
    default:
      return event?.kind ?? 'unknown';
  }
}

/** The message of a failure, with the message of its root cause when that says more. */
function failureText(failure: temporal.api.failure.v1.IFailure | null | undefined): string {
  let message = failure?.message ?? 'failed';
  let cause = failure?.cause;
  for (let depth = 0; cause && depth < 5; depth++) {
    if (cause.message && !message.includes(cause.message)) message += `: ${cause.message}`;
    cause = cause.cause;
  }
  return message;
}

interface Scheduled {
  type: string;
  summary: string | undefined;
  time: number;
}

/**
 * The entries of a stretch of history (one run's events, oldest first). Events whose start lies
 * before the stretch (an activity scheduled earlier) are told with what they carry themselves.
 */
export function timelineEntries(events: readonly HistoryEvent[]): TimelineEntry[] {
  const entries: TimelineEntry[] = [];
  const scheduled = new Map<number, Scheduled>();
  const updates = new Map<string, string>();
  let status: string | undefined;
  let repeats = 1;
  const add = (event: HistoryEvent, kind: TimelineKind, title: string, detail?: string) => {
    const last = entries.at(-1);
    // The watcher may tell the same drift several times: one entry, with its count.
    if (last && last.kind === kind && last.title === title && kind !== 'status') {
      const base = detail ?? '';
      if ((last.detail ?? '').startsWith(base) && (repeats > 1 || last.detail === detail)) {
        repeats++;
        last.detail = `${base}${base ? ' ' : ''}(${repeats} times)`;
        return;
      }
    }
    repeats = 1;
    entries.push({ time: isoTime(event), kind, title, ...(detail ? { detail } : {}) });
  };
  const activity = (id: Long | null | undefined): Scheduled | undefined => scheduled.get(num(id));

  for (const event of events) {
    const started = event.workflowExecutionStartedEventAttributes;
    if (started) {
      const input = first(started.input) as
        { trigger?: { kind?: string; id?: string }; state?: { status?: string } } | undefined;
      if (started.continuedExecutionRunId) {
        add(event, 'run', 'continued as new', 'a fresh history, the state carried over');
      } else if (input?.trigger?.kind === 'adopted') {
        add(
          event,
          'queued',
          'adopted',
          `found in Kubernetes without a workflow, ${input.state?.status ?? 'in some state'}`,
        );
      } else {
        add(event, 'queued', 'queued', askedBy(input?.trigger));
      }
      status = input?.state?.status;
      continue;
    }
    const upsert = event.upsertWorkflowSearchAttributesEventAttributes;
    if (upsert) {
      const field = upsert.searchAttributes?.indexedFields?.[buildSearchAttributeKeys.status.name];
      const value = text(decode(field));
      if (value && value !== status) add(event, 'status', value);
      if (value) status = value;
      continue;
    }
    const signal = event.workflowExecutionSignaledEventAttributes;
    if (signal) {
      const arg = first(signal.input);
      switch (signal.signalName) {
        case 'initStarted':
          add(event, 'init', 'init started', 'its init Job runs');
          break;
        case 'initSlotGranted':
          add(event, 'step', 'init slot granted');
          break;
        case 'evict': {
          const eviction = evictions[String(arg)];
          add(event, 'evicted', eviction?.title ?? `evicted (${String(arg)})`, eviction?.detail);
          break;
        }
        case 'drift':
          add(event, 'drift', 'drift seen', driftDetail(arg as Partial<DriftEvent> | undefined));
          break;
        default:
          add(event, 'step', `signal ${signal.signalName ?? '?'}`);
      }
      continue;
    }
    const accepted = event.workflowExecutionUpdateAcceptedEventAttributes;
    if (accepted) {
      const request = accepted.acceptedRequest;
      const name = request?.input?.name ?? 'update';
      if (request?.meta?.updateId) updates.set(request.meta.updateId, name);
      add(event, 'request', `${name} asked for`);
      continue;
    }
    const completed = event.workflowExecutionUpdateCompletedEventAttributes;
    if (completed) {
      const failure = completed.outcome?.failure;
      if (failure) {
        const name = updates.get(completed.meta?.updateId ?? '') ?? 'update';
        add(event, 'refused', `${name} refused`, failureText(failure));
      }
      continue;
    }
    const scheduledAttributes = event.activityTaskScheduledEventAttributes;
    if (scheduledAttributes) {
      scheduled.set(num(event.eventId), {
        type: scheduledAttributes.activityType?.name ?? 'activity',
        summary: text(decode(event.userMetadata?.summary)),
        time: Date.parse(isoTime(event)),
      });
      continue;
    }
    const done = event.activityTaskCompletedEventAttributes;
    if (done) {
      const step = activity(done.scheduledEventId);
      if (step?.type === 'initialize' || step?.type === 'buildImage') {
        const result = first(done.result) as
          { succeeded?: boolean; reason?: string | null; jobName?: string } | undefined;
        const what = step.type === 'initialize' ? 'init' : 'image build';
        add(
          event,
          result?.succeeded === false ? 'failure' : 'init',
          `${what} ended: ${result?.succeeded === false ? 'failed' : 'succeeded'}`,
          [result?.jobName, result?.reason].filter(Boolean).join(': ') || undefined,
        );
      } else if (step?.summary) {
        add(
          event,
          'step',
          step.summary,
          `took ${duration(Date.parse(isoTime(event)) - step.time)}`,
        );
      }
      continue;
    }
    const failed = event.activityTaskFailedEventAttributes;
    if (failed) {
      const step = activity(failed.scheduledEventId);
      add(
        event,
        'failure',
        `${step?.summary ?? step?.type ?? 'a step'} failed`,
        failureText(failed.failure),
      );
      continue;
    }
    const timedOut = event.activityTaskTimedOutEventAttributes;
    if (timedOut) {
      const step = activity(timedOut.scheduledEventId);
      add(
        event,
        'failure',
        `${step?.summary ?? step?.type ?? 'a step'} timed out`,
        failureText(timedOut.failure),
      );
      continue;
    }
    const cancelled = event.activityTaskCanceledEventAttributes;
    if (cancelled) {
      const step = activity(cancelled.scheduledEventId);
      if (step?.summary) add(event, 'step', `${step.summary}: cancelled`);
      continue;
    }
    const marker = event.markerRecordedEventAttributes;
    if (marker) {
      // A local activity (scale, mirror): told when it carries a summary (scale to 1, to 0).
      const summary = text(decode(event.userMetadata?.summary));
      if (marker.markerName === 'core_local_activity' && summary) add(event, 'step', summary);
      continue;
    }
    const timer = event.timerStartedEventAttributes;
    if (timer) {
      const seconds = protoSeconds(timer.startToFireTimeout);
      const summary = text(decode(event.userMetadata?.summary));
      add(event, 'wait', summary ?? `waiting ${duration(seconds * 1000)} before trying again`);
      continue;
    }
    if (event.workflowExecutionCompletedEventAttributes) {
      add(event, 'ended', 'undeployed', 'its workflow ended');
      continue;
    }
    const terminated = event.workflowExecutionTerminatedEventAttributes;
    if (terminated) {
      add(event, 'ended', 'workflow terminated', terminated.reason ?? undefined);
      continue;
    }
    const workflowFailed = event.workflowExecutionFailedEventAttributes;
    if (workflowFailed) {
      add(event, 'ended', 'workflow failed', failureText(workflowFailed.failure));
      continue;
    }
    const taskFailed = event.workflowTaskFailedEventAttributes;
    if (taskFailed) {
      add(event, 'failure', 'workflow task failed', failureText(taskFailed.failure));
    }
  }
  return entries;
}

/** What {@link createTimelines} needs. */
export interface TimelineDeps {
  client: Pick<Client, 'workflowService'>;
  namespace: string;
  /** Base URL of the Temporal UI (RUNBOAT_TEMPORAL_UI_URL); no link without it. */
  temporalUiUrl?: string | undefined;
  limits?: Partial<TimelineLimits>;
}

/** The page of a build's workflow in the Temporal UI, or null without its base URL. */
export function workflowLink(
  base: string | undefined,
  namespace: string,
  workflowId: string,
): string | null {
  if (!base) return null;
  return `${base.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

const GRPC_NOT_FOUND = 5;

/** Reads timelines of builds from Temporal. */
export function createTimelines(deps: TimelineDeps) {
  const limits = { ...defaultTimelineLimits, ...deps.limits };
  const service = deps.client.workflowService;

  /**
   * The newest events of one run, oldest first, at most `budget`; `complete` when the run's
   * first event was reached.
   */
  const readRun = async (workflowId: string, runId: string | undefined, budget: number) => {
    const newestFirst: HistoryEvent[] = [];
    let nextPageToken: Uint8Array | undefined;
    do {
      const page = await service.getWorkflowExecutionHistoryReverse({
        namespace: deps.namespace,
        execution: { workflowId, ...(runId ? { runId } : {}) },
        maximumPageSize: Math.min(1000, budget - newestFirst.length),
        ...(nextPageToken ? { nextPageToken } : {}),
      });
      newestFirst.push(...(page.history?.events ?? []));
      nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
    } while (nextPageToken && newestFirst.length < budget);
    const events = newestFirst.reverse();
    return { events, complete: num(events[0]?.eventId) === 1 };
  };

  return {
    /** The timeline of a build; a build without a workflow is a {@link BuildNotFoundError}. */
    async timeline(name: string): Promise<Timeline> {
      let runId: string | undefined;
      let budget = limits.maxEvents;
      let entries: TimelineEntry[] = [];
      let truncated = false;
      for (;;) {
        let run: Awaited<ReturnType<typeof readRun>>;
        try {
          run = await readRun(name, runId, budget);
        } catch (error) {
          if ((error as { code?: unknown }).code === GRPC_NOT_FOUND) {
            throw new BuildNotFoundError(name);
          }
          throw error;
        }
        budget -= run.events.length;
        entries = [...timelineEntries(run.events), ...entries];
        const previous =
          run.events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
        if (!run.complete) {
          truncated = true;
          break;
        }
        if (!previous) break;
        if (budget <= 0 || entries.length >= limits.maxEntries) {
          truncated = true;
          break;
        }
        runId = previous;
      }
      if (entries.length > limits.maxEntries) {
        entries = entries.slice(-limits.maxEntries);
        truncated = true;
      }
      return {
        build: name,
        workflow: {
          id: name,
          link: workflowLink(deps.temporalUiUrl, deps.namespace, name),
        },
        entries,
        truncated,
      };
    },
  };
}

/** The timelines of builds, as the API uses them. */
export type Timelines = ReturnType<typeof createTimelines>;
