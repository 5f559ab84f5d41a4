/**
 * The fleet at a glance, on every page of the UI and in `GET /api/v1/status` (docs/ui.md, "Fleet
 * summary"): builds started, deployed, initializing against their limits, and those waiting or
 * failed. Computed from the build index only; the UI renders these figures, labels included, and
 * app.js only puts the new numbers of the `summary` build event into them.
 */
import { EventEmitter } from 'node:events';
import type { BuildStatus } from '../domain/build.js';
import type { BuildView } from '../domain/build-view.js';

/** The limits the figures are measured against. */
export interface FleetLimits {
  maxStarted: number;
  maxDeployed: number;
  /** The global init limit (RUNBOAT_MAX_INITIALIZING); unknown: the figure has no limit. */
  maxInitializing?: number | undefined;
}

/** How a figure reads: `ok`, `full` (at its limit), `warn` (builds need a look), `bad`. */
export type FigureLevel = 'ok' | 'full' | 'warn' | 'bad';

/** One figure of the summary. */
export interface SummaryFigure {
  /** Stable key (`started`, `deployed`, `initializing`, `queued`, `failed`, `cleanup-failed`). */
  key: string;
  label: string;
  value: number;
  /** The limit it counts against; null for a plain count. */
  limit: number | null;
  level: FigureLevel;
  /** What it counts, one sentence (shown on hover). */
  title: string;
}

interface FigureRule {
  key: string;
  label: string;
  statuses: readonly BuildStatus[] | 'deployed';
  limit: (limits: FleetLimits) => number | undefined;
  /** The level of a count above zero without a limit. */
  nonZero: FigureLevel;
  title: string;
}

const rules: readonly FigureRule[] = [
  {
    key: 'started',
    label: 'started',
    statuses: ['started', 'starting'],
    limit: (l) => l.maxStarted,
    nonZero: 'ok',
    title: 'Builds running or starting, of at most RUNBOAT_MAX_STARTED.',
  },
  {
    key: 'deployed',
    label: 'deployed',
    statuses: 'deployed',
    limit: (l) => l.maxDeployed,
    nonZero: 'ok',
    title: 'Builds with a Deployment (any status but queued), of at most RUNBOAT_MAX_DEPLOYED.',
  },
  {
    key: 'initializing',
    label: 'initializing',
    statuses: ['initializing'],
    limit: (l) => l.maxInitializing,
    nonZero: 'ok',
    title: 'Init Jobs running, of the init slots (RUNBOAT_MAX_INITIALIZING).',
  },
  {
    key: 'queued',
    label: 'queued',
    statuses: ['queued', 'todo', 'building'],
    limit: () => undefined,
    nonZero: 'ok',
    title: 'Builds waiting: for a worker to deploy them, for an image build or for an init slot.',
  },
  {
    key: 'failed',
    label: 'failed',
    statuses: ['failed'],
    limit: () => undefined,
    nonZero: 'warn',
    title: 'Builds whose init failed: their init log says why; reset one to try again.',
  },
  {
    key: 'cleanup-failed',
    label: 'cleanup failed',
    statuses: ['cleanup-failed'],
    limit: () => undefined,
    nonZero: 'bad',
    title: 'Builds whose cleanup Job keeps failing: their database may be left behind.',
  },
];

/** How many builds have each status (a status no build has is absent). */
export type StatusCounts = ReadonlyMap<BuildStatus, number>;

/** The counts of these builds by status. */
export function countStatuses(builds: Iterable<BuildView>): StatusCounts {
  const counts = new Map<BuildStatus, number>();
  for (const build of builds) counts.set(build.status, (counts.get(build.status) ?? 0) + 1);
  return counts;
}

/** The figures of the fleet, from every build of the index (queued ones included). */
export function fleetSummary(builds: Iterable<BuildView>, limits: FleetLimits): SummaryFigure[] {
  return fleetSummaryOf(countStatuses(builds), limits);
}

/** The figures of the fleet, from the counts of its builds by status (queued ones included). */
export function fleetSummaryOf(counts: StatusCounts, limits: FleetLimits): SummaryFigure[] {
  let deployed = 0;
  for (const [status, count] of counts) if (status !== 'queued') deployed += count;
  return rules.map((rule) => {
    const value =
      rule.statuses === 'deployed'
        ? deployed
        : rule.statuses.reduce((sum, status) => sum + (counts.get(status) ?? 0), 0);
    const limit = rule.limit(limits) ?? null;
    const level: FigureLevel =
      limit !== null ? (value >= limit ? 'full' : 'ok') : value > 0 ? rule.nonZero : 'ok';
    return { key: rule.key, label: rule.label, value, limit, level, title: rule.title };
  });
}

/** What a {@link SummaryFeed} emits. */
export interface SummaryFeedEvents {
  summary: [SummaryFigure[]];
}

/** The index's build events, as a {@link SummaryFeed} listens to them. */
export interface BuildEventSource {
  all(): BuildView[];
  /** The counts of {@link all} by status, when the source keeps them (no pass over every build). */
  counts?(): StatusCounts;
  on(event: 'upd' | 'del', listener: (build: BuildView) => void): unknown;
  off(event: 'upd' | 'del', listener: (build: BuildView) => void): unknown;
}

/**
 * The summary, computed again at most once per `debounceMs` after builds change, and emitted when
 * a figure changed: one computation for every open page, however many build events arrive.
 */
export class SummaryFeed extends EventEmitter<SummaryFeedEvents> {
  private timer: NodeJS.Timeout | undefined;
  private last = '';
  private current: SummaryFigure[];
  private readonly changed = () => {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.refresh();
    }, this.debounceMs);
  };

  constructor(
    private readonly index: BuildEventSource,
    private readonly limits: FleetLimits,
    private readonly debounceMs = 250,
  ) {
    super();
    this.setMaxListeners(0);
    this.current = fleetSummaryOf(this.counts(), limits);
    this.last = JSON.stringify(this.current);
    index.on('upd', this.changed);
    index.on('del', this.changed);
  }

  /**
   * The figures now: computed again only when builds changed since the last computation (a read
   * between two debounced updates is exact; one with nothing changed costs nothing).
   */
  figures(): SummaryFigure[] {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.refresh();
    }
    return this.current;
  }

  private counts(): StatusCounts {
    return this.index.counts?.() ?? countStatuses(this.index.all());
  }

  private refresh(): void {
    const figures = fleetSummaryOf(this.counts(), this.limits);
    const text = JSON.stringify(figures);
    this.current = figures;
    if (text === this.last) return;
    this.last = text;
    this.emit('summary', figures);
  }

  /** Stops listening to the index. */
  close(): void {
    clearTimeout(this.timer);
    this.index.off('upd', this.changed);
    this.index.off('del', this.changed);
  }
}
