/**
 * A build as the API and UI show it, read from its Deployment (the mirror of the workflow's
 * state), in JSON close to runboat's.
 */
import {
  annotations,
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
  commit_info: { repo: string; target_branch: string; pr: number | null; git_commit: string };
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
  return {
    repo: notes[annotations.repo] ?? '',
    targetBranch: notes[annotations.targetBranch] ?? '',
    pr: pr ? Number(pr) : null,
    gitCommit: notes[annotations.gitCommit] ?? '',
    ...(notes[annotations.headRepo] ? { headRepo: notes[annotations.headRepo] } : {}),
  };
}

/** The view of a build Deployment; builds live at `https://<slug>.<buildDomain>`. */
export function buildView(deployment: DeploymentLike, buildDomain: string): BuildView {
  const commit = commitOf(deployment);
  const slug = buildSlug(commit);
  const notes = deployment.metadata?.annotations ?? {};
  const repoLink = `https://github.com/${commit.repo}`;
  return {
    name: deployment.metadata?.name ?? '',
    commit_info: {
      repo: commit.repo,
      target_branch: commit.targetBranch,
      pr: commit.pr,
      git_commit: commit.gitCommit,
    },
    status: deriveStatus({
      deletionTimestamp: deployment.metadata?.deletionTimestamp,
      replicas: deployment.spec?.replicas ?? 0,
      readyReplicas: deployment.status?.readyReplicas ?? 0,
      annotations: notes,
      statusLabel: deployment.metadata?.labels?.[STATUS_LABEL],
    }),
    init_status: notes[annotations.initStatus] ?? 'todo',
    image_status: notes[annotations.imageStatus] || null,
    deploy_link: `https://${slug}.${buildDomain}`,
    repo_link: repoLink,
    repo_target_branch_link: `${repoLink}/tree/${commit.targetBranch}`,
    repo_pr_link: commit.pr === null ? null : `${repoLink}/pull/${commit.pr}`,
    repo_commit_link: `${repoLink}/commit/${commit.gitCommit}`,
    created: isoTime(deployment.metadata?.creationTimestamp),
    last_scaled: isoTime(notes[annotations.lastScaled]),
    failure_reason: notes[annotations.failureReason] || null,
  };
}
