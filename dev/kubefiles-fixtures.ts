/**
 * Kubefiles that misbehave on purpose, for the tests and the history recorder: the default set
 * with one template changed (a broken init, a cleanup Job that fails until a given attempt).
 * The sandbox fails a Job's pod that carries the label of `dev/kwok-stages.ts`.
 */
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultKubefilesDir } from '../lib/kubefiles.js';
import { OUTCOME_LABEL } from './kwok-stages.js';

/** A copy of the default kubefiles with `file` changed; the change must change something. */
export async function kubefilesWith(
  file: string,
  change: (text: string) => string,
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'runboat-kubefiles-'));
  await cp(defaultKubefilesDir, dir, { recursive: true });
  const original = await readFile(join(defaultKubefilesDir, file), 'utf8');
  const changed = change(original);
  if (changed === original) throw new Error(`${file}: the change did not apply`);
  await writeFile(join(dir, file), changed);
  return dir;
}

/**
 * Kubefiles whose cleanup Job fails unless its name matches the regular expression `passing`
 * (its generation: `-cleanup-3$` passes the third attempt of a build's life).
 */
export function cleanupFailingUnless(passing: string): Promise<string> {
  return kubefilesWith('cleanup.yaml.njk', (text) =>
    text.replace(
      '        runboat/build: {{ buildName | yaml }}\n        runboat/job-kind: cleanup\n      annotations:',
      [
        `{% if not r/${passing}/.test(job.name) %}`,
        `        ${OUTCOME_LABEL}: fail`,
        '{% endif %}',
        '        runboat/build: {{ buildName | yaml }}',
        '        runboat/job-kind: cleanup',
        '      annotations:',
      ].join('\n'),
    ),
  );
}
