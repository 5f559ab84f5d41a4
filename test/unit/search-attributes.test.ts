import { describe, expect, it } from 'vitest';
import { searchAttributeRegistrations } from '../../domain/search-attributes.js';

describe('build search attributes', () => {
  it('register under the names and types the workflows upsert', () => {
    expect(searchAttributeRegistrations()).toEqual([
      'RunboatRepo=Keyword',
      'RunboatTargetBranch=Keyword',
      'RunboatPr=Int',
      'RunboatCommit=Keyword',
      'RunboatStatus=Keyword',
    ]);
  });
});
