/**
 * A build as the API and UI show it, read from its Deployment (the mirror of the workflow's
 * state), in JSON close to runboat's.
 */
import {
  annotations,
  commitNote,
  deriveStatus,
  STATUS_LABEL,
  type BuildStatus,
  type CommitInfo,
} from './build.js';
import { buildSlug } from './names.js';

/** What the view needs of a Deployment. */
export interface DeploymentLike {
  metadata?: {
    name?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: Date | string;
    deletionTimestamp?: Date | string;
  };
  spec?: { replicas?: number };
  status?: { readyReplicas?: number };
}

/** A build in the API's JSON. */
export interface BuildView {
  name: string;
  commit_info: {
    repo: string;
    target_branch: string;
    pr: number | null;
    git_commit: string;
    /** The commit's message (first line), null when the build does not know it. */
    message: string | null;
    /** The commit's author, null when the build does not know it. */
    author: string | null;
  };
  status: BuildStatus;
  init_status: string;
  /** Builds with an image build: `building`, `built` or `failed`; null without one. */
  image_status: string | null;
  deploy_link: string;
  repo_link: string;
  repo_target_branch_link: string;
  repo_pr_link: string | null;
  repo_commit_link: string;
  created: string | null;
  last_scaled: string | null;
  failure_reason: string | null;
}

/**
 * Every time in the API in one format: ISO 8601, UTC, milliseconds (Kubernetes writes seconds,
 * the Python runboat writes `+00:00` offsets). An unreadable value is shown as it is.
 */
export function isoTime(value: Date | string | undefined | null): string | null {
  if (value === undefined || value === null || value === '') return null;
  const time = value instanceof Date ? value : new Date(value);
  return Number.isNaN(time.getTime()) ? String(value) : time.toISOString();
}

/** The commit a Deployment was built from, from its annotations. */
export function commitOf(deployment: DeploymentLike): CommitInfo {
  const notes = deployment.metadata?.annotations ?? {};
  const pr = notes[annotations.pr];
  // Read through the same rule as written: a hand-edited annotation is trusted no more.
  const message = commitNote(notes[annotations.commitMessage]);
  const author = commitNote(notes[annotations.commitAuthor]);
  return {
    repo: notes[annotations.repo] ?? '',
    targetBranch: notes[annotations.targetBranch] ?? '',
    pr: pr ? Number(pr) : null,
    gitCommit: notes[annotations.gitCommit] ?? '',
    ...(notes[annotations.headRepo] ? { headRepo: notes[annotations.headRepo] } : {}),
    ...(message ? { message } : {}),
    ...(author ? { author } : {}),
  };
}

const GITHUB = 'https://github.com';

/**
 * A name with slashes (a repo's `owner/name`, a branch `feature/x`) as URL path segments, each
 * percent-encoded (`a#b` → `a%23b`, `100%` → `100%25`), its slashes kept; undefined when a part
 * is empty, `.` or `..`, which a browser would resolve out of its place (git and GitHub refuse
 * such names; a hand-written annotation may still carry one).
 */
export function pathSegments(name: string): string | undefined {
  const parts = name.split('/');
  if (parts.some((part) => part === '' || part === '.' || part === '..')) return undefined;
  return parts.map(encodeURIComponent).join('/');
}

/** The links of a build to GitHub, every part from outside percent-encoded. */
export function githubLinks(
  commit: Pick<CommitInfo, 'repo' | 'targetBranch' | 'pr' | 'gitCommit'>,
): {
  repo: string;
  targetBranch: string;
  pr: string | null;
  commit: string;
} {
  const repoPath = commit.repo.split('/').length === 2 ? pathSegments(commit.repo) : undefined;
  // Not a repo name: each link searches GitHub for what it is, and leaves nothing.
  const search = (what: string) => `${GITHUB}/search?q=${encodeURIComponent(what)}`;
  if (repoPath === undefined) {
    return {
      repo: search(commit.repo),
      targetBranch: search(commit.repo),
      pr: commit.pr === null ? null : search(commit.repo),
      commit: search(commit.gitCommit),
    };
  }
  const repo = `${GITHUB}/${repoPath}`;
  // GitHub's tree links take a branch with its slashes, each part encoded.
  const branch = pathSegments(commit.targetBranch);
  return {
    repo,
    targetBranch:
      branch === undefined
        ? `${repo}/branches/all?query=${encodeURIComponent(commit.targetBranch)}`
        : `${repo}/tree/${branch}`,
    pr: commit.pr === null ? null : `${repo}/pull/${encodeURIComponent(String(commit.pr))}`,
    commit: `${repo}/commit/${encodeURIComponent(commit.gitCommit)}`,
  };
}

/** The view of a build Deployment; builds live at `https://<slug>.<buildDomain>`. */
/**
 * What the worker reads of a build Deployment to count builds, plan the fleet's evictions and find
 * a branch's builds: the part of {@link buildView} that costs little (no links, no commit notes).
 * At 10,000 builds a whole view of each took ~60 ms of the worker's thread at every plan.
 */
export interface BuildFacts {
  name: string;
  status: BuildStatus;
  repo: string;
  targetBranch: string;
  pr: number | null;
  created: string | null;
  lastScaled: string | null;
}

/** The {@link BuildFacts} of a build Deployment, derived as {@link buildView} derives them. */
export function buildFacts(deployment: DeploymentLike): BuildFacts {
  const notes = deployment.metadata?.annotations ?? {};
  const pr = notes[annotations.pr];
  return {
    name: deployment.metadata?.name ?? '',
    status: deriveStatus({
      deletionTimestamp: deployment.metadata?.deletionTimestamp,
      replicas: deployment.spec?.replicas ?? 0,
      readyReplicas: deployment.status?.readyReplicas ?? 0,
      annotations: notes,
      statusLabel: deployment.metadata?.labels?.[STATUS_LABEL],
    }),
    repo: notes[annotations.repo] ?? '',
    targetBranch: notes[annotations.targetBranch] ?? '',
    pr: pr ? Number(pr) : null,
    created: isoTime(deployment.metadata?.creationTimestamp),
    lastScaled: isoTime(notes[annotations.lastScaled]),
  };
}

const factsOf = new WeakMap<DeploymentLike, BuildFacts>();

/**
 * {@link buildFacts}, derived once per Deployment object and kept as long as the object lives.
 * For objects nobody changes after they are read: the worker's informer cache stores a new
 * object for each change of a Deployment, so a plan at 10,000 builds derives only what changed
 * since the last one.
 */
export function cachedBuildFacts(deployment: DeploymentLike): BuildFacts {
  let facts = factsOf.get(deployment);
  if (!facts) {
    facts = buildFacts(deployment);
    factsOf.set(deployment, facts);
  }
  return facts;
}

export function buildView(deployment: DeploymentLike, buildDomain: string): BuildView {
  const commit = commitOf(deployment);
  const slug = buildSlug(commit);
  const notes = deployment.metadata?.annotations ?? {};
  const links = githubLinks(commit);
  const facts = buildFacts(deployment);
  return {
    name: facts.name,
    commit_info: {
      repo: commit.repo,
      target_branch: commit.targetBranch,
      pr: commit.pr,
      git_commit: commit.gitCommit,
      message: commit.message ?? null,
      author: commit.author ?? null,
    },
    status: facts.status,
    init_status: notes[annotations.initStatus] ?? 'todo',
    image_status: notes[annotations.imageStatus] || null,
    deploy_link: `https://${slug}.${buildDomain}`,
    repo_link: links.repo,
    repo_target_branch_link: links.targetBranch,
    repo_pr_link: links.pr,
    repo_commit_link: links.commit,
    created: facts.created,
    last_scaled: facts.lastScaled,
    failure_reason: notes[annotations.failureReason] || null,
  };
}
