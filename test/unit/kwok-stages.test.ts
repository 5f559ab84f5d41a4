import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { OUTCOME_LABEL, RUN_FOR_ANNOTATION, sandboxStages } from '../../dev/kwok-stages.js';

interface Stage {
  kind: string;
  metadata: { name: string };
  spec: {
    resourceRef: { kind: string };
    selector: { matchExpressions: { key: string; operator: string; values?: string[] }[] };
    delay?: { durationMilliseconds: number; durationFrom?: { expressionFrom: string } };
    next: { statusTemplate?: string; delete?: boolean };
  };
}

const stages = sandboxStages({ jobRunMs: 750 }).map((text) => {
  const [document, ...rest] = parseAllDocuments(text);
  expect(rest).toHaveLength(0);
  expect(document?.errors).toEqual([]);
  return document?.toJS() as Stage;
});

describe('sandbox kwok stages', () => {
  it('are Stage documents with unique names covering nodes and pods', () => {
    expect(stages.every((stage) => stage.kind === 'Stage')).toBe(true);
    const names = stages.map((stage) => stage.metadata.name);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(stages.map((stage) => stage.spec.resourceRef.kind))).toEqual(
      new Set(['Node', 'Pod']),
    );
  });

  it('end Job pods after the default delay or the pod annotation, failing on the label', () => {
    const ends = stages.filter((stage) =>
      /phase: (Succeeded|Failed)/.test(stage.spec.next.statusTemplate ?? ''),
    );
    expect(ends.map((stage) => stage.metadata.name).sort()).toEqual([
      'sandbox-pod-job-failed',
      'sandbox-pod-job-succeeded',
    ]);
    for (const stage of ends) {
      expect(stage.spec.delay?.durationMilliseconds).toBe(750);
      expect(stage.spec.delay?.durationFrom?.expressionFrom).toContain(RUN_FOR_ANNOTATION);
      const outcome = stage.spec.selector.matchExpressions.find((e) =>
        e.key.includes(OUTCOME_LABEL),
      );
      const failing = stage.metadata.name.endsWith('failed');
      expect(outcome?.operator).toBe(failing ? 'In' : 'NotIn');
      expect(outcome?.values).toEqual(['fail']);
      expect(stage.spec.next.statusTemplate).toContain(`exitCode: ${failing ? 1 : 0}`);
    }
  });
});
