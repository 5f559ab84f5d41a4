/**
 * The Worker Deployment Version a worker announces to Temporal (docs/upgrades.md): the
 * deployment name and build id from the settings, the build id defaulting to the package version
 * and the git commit of the code it runs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkerDeploymentVersion } from '@temporalio/common';

/** The settings this module reads. */
export interface WorkerVersionSettings {
  RUNBOAT_DEPLOYMENT_NAME: string;
  RUNBOAT_BUILD_ID?: string | undefined;
}

/** The nearest `package.json` above this module (the sources, or the release in `dist/`). */
function packageJson(): { dir: string; version: string } | undefined {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      return {
        dir,
        version: (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version,
      };
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * `<package version>-<git sha, 12 digits>` when the code runs from a git checkout, else
 * `<package version>-dev` (an image sets `RUNBOAT_BUILD_ID` to its tag instead).
 */
export function defaultBuildId(): string {
  const pkg = packageJson();
  const version = pkg?.version ?? '0.0.0';
  try {
    const sha = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], {
      cwd: pkg?.dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    if (/^[0-9a-f]+$/.test(sha)) return `${version}-${sha}`;
  } catch {
    // not a git checkout, or no git: a release announces the build id it is given
  }
  return `${version}-dev`;
}

/** The version this worker announces. */
export function workerVersion(settings: WorkerVersionSettings): WorkerDeploymentVersion {
  return {
    deploymentName: settings.RUNBOAT_DEPLOYMENT_NAME,
    buildId: settings.RUNBOAT_BUILD_ID ?? defaultBuildId(),
  };
}
