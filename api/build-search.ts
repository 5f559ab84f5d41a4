/**
 * Search and pages over the builds of the index, for `GET /api/v1/builds` and the UI's pages
 * (docs/ui.md, "Search" and "Pages"). A query is words; a build matches when every
 * word does: `#42` (or `42`) is pull request 42, a word of hex digits is also a commit SHA
 * prefix, and any word matches a part of the repo, the branch, the commit's message or author,
 * or the beginning of the build name.
 */
import type { BuildView } from '../domain/build-view.js';
import { ClientError } from '../lib/errors.js';

/** The longest query taken (a search box, not a document). */
export const SEARCH_MAX = 200;
/** The most builds one page of `GET /api/v1/builds` may hold. */
export const PER_PAGE_MAX = 1000;

/** A parsed query: its words, lower-case; none matches everything. */
export type SearchQuery = readonly string[];

/** Splits a query into its words (lower-case); a query longer than {@link SEARCH_MAX} is a 400. */
export function parseSearch(q: string | undefined): SearchQuery {
  if (q === undefined) return [];
  if (q.length > SEARCH_MAX) throw new ClientError(`q: at most ${SEARCH_MAX} characters`);
  return q.toLowerCase().split(/\s+/).filter(Boolean);
}

function wordMatches(build: BuildView, word: string): boolean {
  const commit = build.commit_info;
  const number = /^#?([1-9][0-9]{0,9})$/.exec(word)?.[1];
  if (number !== undefined && commit.pr === Number(number)) return true;
  if (word.startsWith('#')) return false;
  if (/^[0-9a-f]{4,40}$/.test(word) && commit.git_commit.startsWith(word)) return true;
  return (
    build.name.startsWith(word) ||
    commit.repo.includes(word) ||
    commit.target_branch.toLowerCase().includes(word) ||
    (commit.message ?? '').toLowerCase().includes(word) ||
    (commit.author ?? '').toLowerCase().includes(word)
  );
}

/** Whether a build matches every word of a query. */
export function matchesSearch(build: BuildView, query: SearchQuery): boolean {
  return query.every((word) => wordMatches(build, word));
}

/** A page of a list. */
export interface Page<T> {
  items: T[];
  /** 1-based; the last page when the one asked for is past it. */
  page: number;
  perPage: number;
  /** Pages in all (at least 1). */
  pages: number;
  /** Items in all pages. */
  total: number;
}

/** The page (1-based) of a list; a page past the last one gives the last one. */
export function pageOf<T>(items: readonly T[], page: number, perPage: number): Page<T> {
  const pages = Math.max(1, Math.ceil(items.length / perPage));
  const current = Math.min(Math.max(1, page), pages);
  const start = (current - 1) * perPage;
  return {
    items: items.slice(start, start + perPage),
    page: current,
    perPage,
    pages,
    total: items.length,
  };
}
