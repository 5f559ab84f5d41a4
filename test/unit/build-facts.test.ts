/**
 * The worker counts, plans and matches builds from their facts (`buildFacts`), the cheap part of
 * the API's build view: the two must never disagree, and the facts kept per cached Deployment
 * object must follow the cache when it replaces an object.
 */
import { describe, expect, it } from 'vitest';
import { annotations, BUILD_LABEL, STATUS_LABEL } from '../../domain/build.js';
import {
  buildFacts,
  buildView,
  cachedBuildFacts,
  type DeploymentLike,
} from '../../domain/build-view.js';

const created = new Date('2026-11-20T10:00:00Z');

function deployment(
  name: string,
  notes: Record<string, string>,
  shape: { status?: string; replicas?: number; ready?: number; deleting?: boolean } = {},
): DeploymentLike {
  return {
    metadata: {
      name,
      labels: { [BUILD_LABEL]: name, ...(shape.status ? { [STATUS_LABEL]: shape.status } : {}) },
      annotations: {
        [annotations.repo]: 'acme/shop',
        [annotations.targetBranch]: '16.0',
        [annotations.gitCommit]: '0123456789abcdef0123456789abcdef01234567',
        ...notes,
      },
      creationTimestamp: created,
      ...(shape.deleting ? { deletionTimestamp: new Date('2026-11-21T00:00:00Z') } : {}),
    },
    spec: { replicas: shape.replicas ?? 0 },
    status: { readyReplicas: shape.ready ?? 0 },
  };
}

const cases: [string, DeploymentLike][] = [
  [
    'stopped, last scaled as a string',
    deployment(
      'b-stopped',
      { [annotations.initStatus]: 'succeeded', [annotations.lastScaled]: '2026-11-22T08:00:00Z' },
      { status: 'stopped' },
    ),
  ],
  [
    'started with a ready pod',
    deployment(
      'b-started',
      { [annotations.initStatus]: 'succeeded' },
      { status: 'started', replicas: 1, ready: 1 },
    ),
  ],
  [
    'a pull request, queued for its init',
    deployment('b-pr', { [annotations.pr]: '42', [annotations.initStatus]: 'todo' }),
  ],
  ['being deleted', deployment('b-gone', {}, { status: 'stopped', deleting: true })],
  [
    'failed, with a reason',
    deployment(
      'b-failed',
      { [annotations.initStatus]: 'failed', [annotations.failureReason]: 'init Job failed' },
      { status: 'failed' },
    ),
  ],
  ['nothing but a name', { metadata: { name: 'b-bare' } }],
];

describe('build facts', () => {
  it.each(cases)('tell what the build view tells: %s', (_label, d) => {
    const view = buildView(d, 'runboat.example.com');
    expect(buildFacts(d)).toEqual({
      name: view.name,
      status: view.status,
      repo: view.commit_info.repo,
      targetBranch: view.commit_info.target_branch,
      pr: view.commit_info.pr,
      created: view.created,
      lastScaled: view.last_scaled,
    });
  });

  it('are derived once per Deployment object, and again for the object that replaces it', () => {
    const first = deployment(
      'b-one',
      { [annotations.initStatus]: 'succeeded' },
      { status: 'stopped' },
    );
    const facts = cachedBuildFacts(first);
    expect(facts.status).toBe('stopped');
    expect(cachedBuildFacts(first)).toBe(facts);
    // The cache stores a new object for the changed Deployment: started now.
    const changed = deployment(
      'b-one',
      {
        [annotations.initStatus]: 'succeeded',
        [annotations.lastScaled]: '2026-11-23T09:00:00Z',
      },
      { status: 'started', replicas: 1, ready: 1 },
    );
    expect(cachedBuildFacts(changed)).toMatchObject({
      status: 'started',
      lastScaled: '2026-11-23T09:00:00.000Z',
    });
    expect(cachedBuildFacts(first).status).toBe('stopped');
  });
});
