import { mkdtemp, rename, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  findRepoConfig,
  loadReposFile,
  loadSettings,
  reposFileReader,
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

describe('the repos file as the processes read it', () => {
  const entry = (image: string) =>
    `- repo: acme/shop\n  branch: main\n  builds:\n    - image: ${image}\n`;

  it('picks up an edit, keeps the last good configuration after a bad one and says why', async () => {
    const path = await reposFile(entry('odoo:16.0'));
    const errors: string[] = [];
    const read = reposFileReader(path, loadReposFile(path), (message) => errors.push(message));
    expect(read()[0]?.builds[0]?.image).toBe('odoo:16.0');
    // Unchanged: the same configuration, not read again.
    expect(read()).toBe(read());

    // Written as editors do (a new file renamed over the old one), then half-written.
    await writeFile(`${path}.new`, entry('odoo:17.0'));
    await rename(`${path}.new`, path);
    expect(read()[0]?.builds[0]?.image).toBe('odoo:17.0');
    await writeFile(path, '- repo: acme/shop\n  branch: [unclosed\n');
    expect(read()[0]?.builds[0]?.image).toBe('odoo:17.0');
    expect(errors).toEqual([expect.stringMatching(/not valid YAML[^]*keeping the last good/)]);
    // Reported once per bad edit, not at every read.
    read();
    expect(errors).toHaveLength(1);

    await writeFile(path, '- repo: acme/shop\n  branch: main\n  builds: []\n');
    expect(read()[0]?.builds[0]?.image).toBe('odoo:17.0');
    expect(errors[1]).toMatch(/0\.builds.*keeping the last good/);
    await unlink(path);
    expect(read()[0]?.builds[0]?.image).toBe('odoo:17.0');
    expect(errors[2]).toMatch(/ENOENT.*keeping the last good/);

    await writeFile(path, entry('odoo:18.0'));
    expect(read()[0]?.builds[0]?.image).toBe('odoo:18.0');
    expect(errors).toHaveLength(3);
  });
});
