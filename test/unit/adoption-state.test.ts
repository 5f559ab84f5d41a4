/**
 * The state an adopting workflow starts from (domain/adoption.ts): a Job still running keeps its
 * generation, so that the adopting workflow's activity adopts it instead of creating another.
 */
import { describe, expect, it } from 'vitest';
import { adoptedState } from '../../domain/adoption.js';
import { annotations, STATUS_LABEL } from '../../domain/build.js';

const deployment = (name: string, notes: Record<string, string>, status: string) => ({
  metadata: {
    name,
    labels: { [STATUS_LABEL]: status },
    annotations: {
      [annotations.repo]: 'acme/shop',
      [annotations.targetBranch]: 'main',
      [annotations.pr]: '',
      [annotations.gitCommit]: '0123456789abcdef0123456789abcdef01234567',
      ...notes,
    },
  },
  spec: { replicas: 0 },
  status: { readyReplicas: 0 },
});

describe('adoptedState', () => {
  it('keeps the generation of an image build under way, and counts finished ones', () => {
    const building = adoptedState(
      deployment(
        'b1',
        { [annotations.initStatus]: 'todo', [annotations.imageStatus]: 'building' },
        'building',
      ),
      ['b1-build-1', 'b1-build-2', 'b2-build-7'],
    );
    expect(building.status).toBe('building');
    // The adopting workflow's next build Job is b1-build-2: the one still running.
    expect(building.buildGeneration).toBe(1);
    const built = adoptedState(
      deployment(
        'b1',
        { [annotations.initStatus]: 'succeeded', [annotations.imageStatus]: 'built' },
        'stopped',
      ),
      ['b1-build-1', 'b1-build-2', 'b1-init-1'],
    );
    expect(built.status).toBe('stopped');
    expect(built.buildGeneration).toBe(2);
    expect(built.initGeneration).toBe(1);
  });
});
