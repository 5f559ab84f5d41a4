/**
 * A commit's message and author travel from the trigger to the build's Deployment (annotations
 * written by the kubefiles) and back into the build view: one line, at most 200 characters, and no
 * message, however hostile, changes the structure of a manifest.
 */
import { describe, expect, it } from 'vitest';
import { annotations, COMMIT_NOTE_MAX, commitNote } from '../../domain/build.js';
import { buildView } from '../../domain/build-view.js';
import {
  defaultKubefilesDir,
  renderKubefiles,
  type KubefilesContext,
  type Manifest,
} from '../../lib/kubefiles.js';
import { kubefilesContext } from './kubefiles-fixture.js';

const commit = {
  repo: 'acme/shop',
  targetBranch: 'main',
  pr: null,
  gitCommit: '0123456789abcdef0123456789abcdef01234567',
};

function context(message: string, author: string): KubefilesContext {
  return kubefilesContext(commit, {
    commit: {
      headRepo: null,
      // As activities/index.ts passes them.
      message: commitNote(message),
      author: commitNote(author),
    },
  });
}

async function deploymentOf(message: string, author = 'Ann Author'): Promise<Manifest> {
  const manifests = await renderKubefiles(defaultKubefilesDir, context(message, author));
  const deployment = manifests.find((m) => m.kind === 'Deployment');
  if (!deployment) throw new Error('no Deployment rendered');
  return deployment;
}

const hostile: Record<string, string> = {
  'YAML injection': 'fix"\n    runboat/init-status: succeeded\nspec:\n  replicas: 5\n#',
  'a flow mapping': '{replicas: 3}, [a, b]: &anchor *anchor !!binary',
  'a document break': 'first line\n---\napiVersion: v1\nkind: Secret',
  'quotes and backslashes': `it's "quoted" \\n not a newline \\" ' }`,
  'unicode and emoji': 'Ünïcödé 修正 ✓ 🚀 — done',
  'control and bidi characters': 'a\u0000b\u0007c\u001bd\u007fe\u0085f\u202eg\u2066h',
  'carriage returns and line separators': '\r\n  \u2028real first line\rsecond',
};

describe('commitNote', () => {
  it('keeps the first non-empty line, spaces collapsed', () => {
    expect(commitNote('\n\n  Fix   the\tinvoice total  \n\nLong body\nmore')).toBe(
      'Fix the invoice total',
    );
    expect(commitNote('one\r\ntwo')).toBe('one');
    expect(commitNote('\u2028second\u2029third')).toBe('second');
    expect(commitNote(undefined)).toBe('');
    expect(commitNote('   \n\t')).toBe('');
  });

  it('drops control and reordering characters, and lone surrogates', () => {
    expect(commitNote('a\u0000b\u001bc\u007fd\u009fe')).toBe('a b c d e');
    expect(commitNote('evil\u202egnp.exe')).toBe('evil gnp.exe');
    expect(commitNote('half \ud83d pair')).toBe('half \ufffd pair');
    expect(commitNote('whole 🚀 pair')).toBe('whole 🚀 pair');
  });

  it('cuts at 200 characters, never inside a character', () => {
    const long = '🚀'.repeat(300);
    const kept = commitNote(long);
    expect(Array.from(kept)).toHaveLength(COMMIT_NOTE_MAX);
    expect(kept.endsWith('…')).toBe(true);
    expect(kept.slice(0, -1)).toBe('🚀'.repeat(COMMIT_NOTE_MAX - 1));
    expect(commitNote('x'.repeat(COMMIT_NOTE_MAX))).toBe('x'.repeat(COMMIT_NOTE_MAX));
  });
});

describe('the commit message and author on the Deployment', () => {
  it.each(Object.entries(hostile))('keep %s as one annotation value', async (_label, message) => {
    const deployment = await deploymentOf(message, message);
    const notes = deployment.metadata.annotations ?? {};
    expect(notes[annotations.commitMessage]).toBe(commitNote(message));
    expect(notes[annotations.commitAuthor]).toBe(commitNote(message));
    // Nothing else changed: the same annotations, status and replicas as a plain message.
    const plain = await deploymentOf('plain', 'plain');
    expect(Object.keys(notes).sort()).toEqual(Object.keys(plain.metadata.annotations ?? {}).sort());
    expect(notes[annotations.initStatus]).toBe('todo');
    expect((deployment.spec as { replicas?: number }).replicas).toBe(0);
    // eslint-disable-next-line no-control-regex -- no control character may remain
    expect(notes[annotations.commitMessage]).not.toMatch(/[\u0000-\u001f\u202e]/);
  });

  it('leaves the annotations out when the trigger did not know them', async () => {
    const deployment = await deploymentOf('', '');
    expect(deployment.metadata.annotations).not.toHaveProperty(annotations.commitMessage);
    expect(deployment.metadata.annotations).not.toHaveProperty(annotations.commitAuthor);
  });

  it('reads them back into the build view, sanitized again', async () => {
    const deployment = await deploymentOf('Fix: 🚀 launch\nbody', 'Ann Author');
    const view = buildView(deployment, 'runboat.example.com');
    expect(view.commit_info.message).toBe('Fix: 🚀 launch');
    expect(view.commit_info.author).toBe('Ann Author');
    // An annotation edited by hand (kubectl annotate) is read through the same rule.
    const edited = buildView(
      {
        metadata: {
          name: 'b',
          annotations: {
            [annotations.repo]: 'acme/shop',
            [annotations.commitMessage]: 'line one\nline two',
            [annotations.commitAuthor]: '   ',
          },
        },
      },
      'runboat.example.com',
    );
    expect(edited.commit_info.message).toBe('line one');
    expect(edited.commit_info.author).toBeNull();
    const none = buildView({ metadata: { name: 'b' } }, 'runboat.example.com');
    expect(none.commit_info).toMatchObject({ message: null, author: null });
  });
});
