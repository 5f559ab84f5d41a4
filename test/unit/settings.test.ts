import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  findRepoConfig,
  loadSettings,
  SettingsError,
  type RepoConfig,
} from '../../lib/settings.js';

async function reposFile(content: string): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), 'runboat-settings-')), 'repos.yaml');
  await writeFile(path, content);
  return path;
}

describe('settings', () => {
  it('load the repos file with defaults', async () => {
    const file = await reposFile(`
- repo: acme/.*
  branch: "1[0-9]\\\\.0"
  sticky: true
  builds:
    - image: ghcr.io/acme/odoo:16.0
      env: { ADDONS: sale }
`);
    const settings = loadSettings({ RUNBOAT_REPOS_FILE: file, RUNBOAT_MAX_INITIALIZING: '3' });
    expect(settings.RUNBOAT_MAX_INITIALIZING).toBe(3);
    expect(settings.RUNBOAT_WORKER_ROLES).toEqual(['builds', 'init', 'image-build']);
    expect(settings.repos[0]?.builds[0]).toEqual({
      image: 'ghcr.io/acme/odoo:16.0',
      env: { ADDONS: 'sale' },
      secretEnv: {},
      secretEnvForForks: [],
      templateVars: {},
      source: { fetch: 'auto', install: 'addons-path', addons: [] },
    });
    expect(settings.repos[0]?.trustForks).toBe(false);
    expect(settings.repos[0]?.cloneToken).toBeUndefined();
  });

  it('name the field that is wrong', async () => {
    expect(() => loadSettings({ RUNBOAT_MAX_INITIALIZING: 'many' })).toThrow(
      /environment RUNBOAT_MAX_INITIALIZING: /,
    );
    expect(() => loadSettings({ RUNBOAT_WORKER_ROLES: 'builds,api' })).toThrow(
      /RUNBOAT_WORKER_ROLES/,
    );
    const file = await reposFile('- repo: acme/x\n  branch: "("\n  builds: [{ image: x }]\n');
    expect(() => loadSettings({ RUNBOAT_REPOS_FILE: file })).toThrow(
      new SettingsError(`${file} 0.branch: not a valid regular expression`),
    );
    const noBuilds = await reposFile('- repo: acme/x\n  branch: main\n  builds: []\n');
    expect(() => loadSettings({ RUNBOAT_REPOS_FILE: noBuilds })).toThrow(/0\.builds/);
  });
});

describe('findRepoConfig', () => {
  const defaultSource = { fetch: 'auto' as const, install: 'addons-path' as const, addons: [] };
  const repos: RepoConfig[] = [
    {
      repo: 'acme/special',
      branch: 'main',
      sticky: false,
      trustForks: false,
      builds: [
        {
          image: 'a',
          env: {},
          secretEnv: {},
          templateVars: {},
          secretEnvForForks: [],
          source: defaultSource,
        },
      ],
    },
    {
      repo: 'acme/.*',
      branch: '.*',
      sticky: false,
      trustForks: false,
      builds: [
        {
          image: 'b',
          env: {},
          secretEnv: {},
          templateVars: {},
          secretEnvForForks: [],
          source: defaultSource,
        },
      ],
    },
  ];

  it('matches whole names, repos case-insensitively, first entry first', () => {
    expect(findRepoConfig(repos, 'ACME/special', 'main')?.builds[0]?.image).toBe('a');
    expect(findRepoConfig(repos, 'acme/special', 'mainline')?.builds[0]?.image).toBe('b');
    expect(findRepoConfig(repos, 'other/acme/x', 'main')).toBeUndefined();
  });

  it('lets .* match any branch, line breaks included', () => {
    expect(findRepoConfig(repos, 'acme/shop', 'a\nb')?.builds[0]?.image).toBe('b');
  });
});
