/**
 * The Worker Deployment Version a worker announces (docs/upgrades.md): from the settings, the
 * build id defaulting to the package version and the git commit.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadSettings, SettingsError } from '../../lib/settings.js';
import { workerVersion } from '../../lib/worker-version.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('the worker version', () => {
  it('is off by default, in deployment runboat, with the version and git sha as build id', () => {
    const settings = loadSettings({});
    expect(settings.RUNBOAT_WORKER_VERSIONING).toBe(false);
    const sha = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8' });
    expect(workerVersion(settings)).toEqual({
      deploymentName: 'runboat',
      buildId: `${pkg.version}-${sha.trim()}`,
    });
  });

  it('takes the deployment name and build id from the settings', () => {
    const settings = loadSettings({
      RUNBOAT_WORKER_VERSIONING: 'true',
      RUNBOAT_DEPLOYMENT_NAME: 'runboat-oca',
      RUNBOAT_BUILD_ID: '2026.11.23-abc',
    });
    expect(settings.RUNBOAT_WORKER_VERSIONING).toBe(true);
    expect(workerVersion(settings)).toEqual({
      deploymentName: 'runboat-oca',
      buildId: '2026.11.23-abc',
    });
  });

  it('refuses a deployment name with a dot, naming the variable', () => {
    expect(() => loadSettings({ RUNBOAT_DEPLOYMENT_NAME: 'runboat.prod' })).toThrow(SettingsError);
    expect(() => loadSettings({ RUNBOAT_DEPLOYMENT_NAME: 'runboat.prod' })).toThrow(
      /RUNBOAT_DEPLOYMENT_NAME: must not contain "."/,
    );
  });
});
