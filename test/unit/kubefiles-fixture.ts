/**
 * The context the unit tests render the default kubefiles with: a build of `commit` in the
 * `runboat-builds` namespace, fetched from GitHub and trusted, on the acme Odoo image, with
 * nothing else set. A test overrides what it is about; `commit` and `source` are merged.
 */
import type { CommitInfo } from '../../domain/build.js';
import { buildName, buildSlug } from '../../domain/names.js';
import type { KubefilesContext } from '../../lib/kubefiles.js';

export type ContextOverrides = Omit<Partial<KubefilesContext>, 'commit' | 'source'> & {
  commit?: Partial<KubefilesContext['commit']>;
  source?: Partial<KubefilesContext['source']>;
};

export function kubefilesContext(
  commit: CommitInfo,
  overrides: ContextOverrides = {},
): KubefilesContext {
  return {
    namespace: 'runboat-builds',
    mode: 'deployment',
    buildName: buildName(commit),
    buildSlug: buildSlug(commit),
    buildDomain: 'runboat.example.com',
    image: { name: 'ghcr.io/acme/odoo', tag: '16.0' },
    env: {},
    secretEnv: {},
    templateVars: {},
    ...overrides,
    commit: {
      repo: commit.repo,
      targetBranch: commit.targetBranch,
      pr: commit.pr,
      sha: commit.gitCommit,
      headRepo: 'acme/shop',
      ...overrides.commit,
    },
    source: {
      fetch: 'auto',
      install: 'addons-path',
      addons: '',
      url: 'https://github.com/acme/shop.git',
      tarballUrl: `https://api.github.com/repos/acme/shop/tarball/${commit.gitCommit}`,
      cloneToken: null,
      trusted: true,
      ...overrides.source,
    },
  };
}
