/**
 * Build names and slugs: deterministic from the commit, so that a redelivered webhook or a second
 * API call finds the same build, and valid in Kubernetes object names and DNS host names whatever
 * the branch is called.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import type { CommitInfo } from './build.js';

/** Longest DNS label. */
const DNS_LABEL_MAX = 63;

function digest(text: string): string {
  return bytesToHex(sha256(utf8ToBytes(text)));
}

/**
 * The build name: `b` and 15 hex digits of a hash of (repo, target branch, PR, commit). 16
 * characters leave room for suffixes (`-init-3`, `-cleanup-1`) in a 63-character object name.
 */
export function buildName(commit: CommitInfo): string {
  const key = [commit.repo.toLowerCase(), commit.targetBranch, commit.pr ?? '', commit.gitCommit];
  return `b${digest(JSON.stringify(key)).slice(0, 15)}`;
}

/** Lower-case, only `[a-z0-9-]`, no leading, trailing or doubled dash. */
export function slugify(text: string): string {
  return text
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

/**
 * The host name label of a build: `repo-branch[-prN]-sha12`, slugified. When that is longer than a
 * DNS label, the repo and branch part is cut and a hash of repo and branch is added, so that two
 * long branch names that share a prefix still get different slugs; the same for branch names with
 * characters the slug cannot keep.
 */
export function buildSlug(commit: CommitInfo): string {
  const tail = [commit.pr === null ? '' : `pr${commit.pr}`, commit.gitCommit.slice(0, 12)]
    .filter(Boolean)
    .map(slugify)
    .join('-');
  const head = slugify(`${commit.repo}-${commit.targetBranch}`) || 'build';
  const full = `${head}-${tail}`;
  // Characters other than ASCII letters, digits and separators are dropped by slugify: two such
  // branches could meet on one slug, so the hash is added.
  const lossy = /[^A-Za-z0-9._/-]/.test(commit.repo + commit.targetBranch);
  if (full.length <= DNS_LABEL_MAX && !lossy) return full;
  const hash = digest(JSON.stringify([commit.repo, commit.targetBranch])).slice(0, 6);
  const room = DNS_LABEL_MAX - tail.length - hash.length - 2;
  const cut = head.slice(0, room).replace(/-+$/, '');
  return `${cut}-${hash}-${tail}`;
}

/**
 * One line that tells a build apart, for the Temporal UI (the workflow's static summary):
 * `acme/shop 16.0 · PR #42 · 0123456789ab`.
 */
export function buildSummary(commit: CommitInfo): string {
  const pr = commit.pr === null ? '' : ` · PR #${commit.pr}`;
  return `${commit.repo} ${commit.targetBranch}${pr} · ${commit.gitCommit.slice(0, 12)}`;
}

/** The workflow's static details (Markdown): where the build's commit and pull request are. */
export function buildDetails(commit: CommitInfo): string {
  const repo = `https://github.com/${commit.repo}`;
  const lines = [
    `**${commit.repo}** branch \`${commit.targetBranch}\``,
    `commit [${commit.gitCommit.slice(0, 12)}](${repo}/commit/${commit.gitCommit})`,
  ];
  if (commit.pr !== null) {
    const from =
      commit.headRepo && commit.headRepo !== commit.repo ? ` from ${commit.headRepo}` : '';
    lines.push(`pull request [#${commit.pr}](${repo}/pull/${commit.pr})${from}`);
  }
  return lines.join('\n\n');
}
