/**
 * Temporal search attributes of a build workflow: the fields by which the Temporal UI and the
 * visibility API find builds. They mirror the annotations on the build's Deployment.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Search attribute keys of a build, typed for `typedSearchAttributes` and upserts. */
export const buildSearchAttributeKeys = {
  /** `owner/repo`, lower-case. */
  repo: defineSearchAttributeKey('RunboatRepo', SearchAttributeType.KEYWORD),
  /** The branch the commit is on, or the PR's target branch. */
  targetBranch: defineSearchAttributeKey('RunboatTargetBranch', SearchAttributeType.KEYWORD),
  /** The pull request number; absent for branch builds. */
  pr: defineSearchAttributeKey('RunboatPr', SearchAttributeType.INT),
  /** The full commit SHA. */
  commit: defineSearchAttributeKey('RunboatCommit', SearchAttributeType.KEYWORD),
  /** The build status (`todo`, `initializing`, `stopped`, …). */
  status: defineSearchAttributeKey('RunboatStatus', SearchAttributeType.KEYWORD),
} as const;

/** The type names the Temporal CLI expects when registering a search attribute. */
const cliTypeNames: Record<SearchAttributeType, string> = {
  [SearchAttributeType.TEXT]: 'Text',
  [SearchAttributeType.KEYWORD]: 'Keyword',
  [SearchAttributeType.INT]: 'Int',
  [SearchAttributeType.DOUBLE]: 'Double',
  [SearchAttributeType.BOOL]: 'Bool',
  [SearchAttributeType.DATETIME]: 'Datetime',
  [SearchAttributeType.KEYWORD_LIST]: 'KeywordList',
};

/** `NAME=Type` pairs for `temporal server start-dev --search-attribute` and `operator` commands. */
export function searchAttributeRegistrations(): string[] {
  return Object.values(buildSearchAttributeKeys).map(
    (key) => `${key.name}=${cliTypeNames[key.type]}`,
  );
}
