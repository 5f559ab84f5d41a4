/**
 * The builds of the index in memory, found without a pass over all of them: by name, by repo and
 * by repo and branch (what `GET /api/v1/builds` and the UI's repo pages ask for), and every build
 * newest first, kept in order as builds come and go. A farm of 10,000 builds answers
 * one branch's builds in microseconds (docs/operations.md, "The API at scale").
 */
import type { BuildStatus } from '../domain/build.js';
import type { BuildView } from '../domain/build-view.js';

/** Filters of `GET /builds`. */
export interface BuildFilter {
  repo?: string | undefined;
  targetBranch?: string | undefined;
  /** A branch name or `pr<N>`-less PR number as text: matches the target branch or the PR. */
  branch?: string | undefined;
  pr?: number | undefined;
  status?: BuildStatus | undefined;
  name?: string | undefined;
}

/** Whether a build passes every given filter (`repo`, lower-case, stands for `filter.repo`). */
export function matches(build: BuildView, filter: BuildFilter, repo: string | undefined): boolean {
  return (
    (repo === undefined || build.commit_info.repo === repo) &&
    (filter.targetBranch === undefined ||
      build.commit_info.target_branch === filter.targetBranch) &&
    (filter.branch === undefined || build.commit_info.target_branch === filter.branch) &&
    (filter.pr === undefined || build.commit_info.pr === filter.pr) &&
    (filter.status === undefined || build.status === filter.status) &&
    (filter.name === undefined || build.name === filter.name)
  );
}

/**
 * Newest first (creation time), then by name. Plain code-unit comparison: creation times are ISO
 * strings of one format and names are `[a-z0-9-]`, where it orders as `localeCompare` does at a
 * fraction of its cost.
 */
export function newestFirst(a: BuildView, b: BuildView): number {
  const ac = a.created ?? '';
  const bc = b.created ?? '';
  if (ac !== bc) return ac < bc ? 1 : -1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function branchKey(repo: string, branch: string): string {
  return `${repo}\n${branch}`;
}

function addTo(map: Map<string, Map<string, BuildView>>, key: string, view: BuildView): void {
  let bucket = map.get(key);
  if (!bucket) map.set(key, (bucket = new Map()));
  bucket.set(view.name, view);
}

function removeFrom(map: Map<string, Map<string, BuildView>>, key: string, name: string): void {
  const bucket = map.get(key);
  if (!bucket) return;
  bucket.delete(name);
  if (bucket.size === 0) map.delete(key);
}

/** Builds by name, with the lookups the API's filters need. */
export class BuildSet {
  private readonly byName = new Map<string, BuildView>();
  private readonly byRepo = new Map<string, Map<string, BuildView>>();
  private readonly byBranch = new Map<string, Map<string, BuildView>>();
  /** Every build, newest first (unless {@link unordered}). */
  private readonly sorted: BuildView[] = [];
  /** Whether {@link sorted} holds the builds in no order yet, sorted at the next read. */
  private unordered = false;
  /** Builds by status, kept as builds come, change and go: `GET /api/v1/status` reads it. */
  private readonly byStatus = new Map<BuildStatus, number>();

  get size(): number {
    return this.byName.size;
  }

  get(name: string): BuildView | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  values(): IterableIterator<BuildView> {
    return this.byName.values();
  }

  /** Adds a build or replaces the one of the same name. */
  set(view: BuildView): void {
    const old = this.byName.get(view.name);
    if (old) this.unindex(old);
    if (this.unordered) {
      if (old) this.sorted[this.sorted.indexOf(old)] = view;
      else this.sorted.push(view);
    } else {
      // A change of status keeps the build's place: replaced where it stands.
      if (old && newestFirst(old, view) === 0) this.sorted[this.position(old)] = view;
      else if (old) this.unsort(old);
      if (!old || newestFirst(old, view) !== 0) {
        this.sorted.splice(this.position(view), 0, view);
      }
    }
    this.byName.set(view.name, view);
    this.byStatus.set(view.status, (this.byStatus.get(view.status) ?? 0) + 1);
    const { repo, target_branch: branch } = view.commit_info;
    addTo(this.byRepo, repo, view);
    addTo(this.byBranch, branchKey(repo, branch), view);
  }

  /** Removes a build; returns it, or undefined when it was not here. */
  delete(name: string): BuildView | undefined {
    const old = this.byName.get(name);
    if (!old) return undefined;
    this.unindex(old);
    this.unsort(old);
    this.byName.delete(name);
    return old;
  }

  private unindex(view: BuildView): void {
    const left = (this.byStatus.get(view.status) ?? 0) - 1;
    if (left > 0) this.byStatus.set(view.status, left);
    else this.byStatus.delete(view.status);
    const { repo, target_branch: branch } = view.commit_info;
    removeFrom(this.byRepo, repo, view.name);
    removeFrom(this.byBranch, branchKey(repo, branch), view.name);
  }

  private unsort(view: BuildView): void {
    this.sorted.splice(this.unordered ? this.sorted.indexOf(view) : this.position(view), 1);
  }

  /**
   * Adds the next builds in no order, sorted once at the next read: the first list of 10,000
   * builds, each put in its place as it came, moved the array's end 10,000 times.
   */
  deferOrder(): void {
    this.unordered = true;
  }

  /** Where a build is, or would be, in the newest-first order (names are unique: one place). */
  private position(view: BuildView): number {
    let low = 0;
    let high = this.sorted.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (newestFirst(this.sorted[middle]!, view) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** How many builds have each status (a status no build has is absent). */
  counts(): ReadonlyMap<BuildStatus, number> {
    return this.byStatus;
  }

  /** Every build, newest first: the set's own array, changed by the next change (copy it to keep it). */
  newestFirst(): readonly BuildView[] {
    if (this.unordered) {
      this.sorted.sort(newestFirst);
      this.unordered = false;
    }
    return this.sorted;
  }

  /**
   * The builds matching every given filter, in no order. Only the builds of the filter's repo
   * (and branch) are looked at when it names one.
   */
  select(filter: BuildFilter): BuildView[] {
    const repo = filter.repo?.toLowerCase();
    if (filter.name !== undefined) {
      const build = this.byName.get(filter.name);
      return build && matches(build, filter, repo) ? [build] : [];
    }
    const branch = filter.targetBranch ?? filter.branch;
    const candidates =
      repo === undefined
        ? this.byName
        : branch === undefined
          ? this.byRepo.get(repo)
          : this.byBranch.get(branchKey(repo, branch));
    const found: BuildView[] = [];
    if (!candidates) return found;
    for (const build of candidates.values()) {
      if (matches(build, filter, repo)) found.push(build);
    }
    return found;
  }
}

/** Whether a filter filters anything. */
export function filters(filter: BuildFilter): boolean {
  return Object.values(filter).some((value) => value !== undefined);
}

/** Two lists in newest-first order as one, in that order. */
export function mergeNewestFirst(a: readonly BuildView[], b: readonly BuildView[]): BuildView[] {
  if (b.length === 0) return a.slice();
  if (a.length === 0) return b.slice();
  const merged = new Array<BuildView>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) {
    merged[k++] = newestFirst(a[i]!, b[j]!) <= 0 ? a[i++]! : b[j++]!;
  }
  while (i < a.length) merged[k++] = a[i++]!;
  while (j < b.length) merged[k++] = b[j++]!;
  return merged;
}
