import { describe, expect, it } from 'vitest';
import { githubLinks, pathSegments } from '../../domain/build-view.js';

const links = (targetBranch: string, repo = 'acme/shop', pr: number | null = null) =>
  githubLinks({ repo, targetBranch, pr, gitCommit: 'a'.repeat(40) });

describe('GitHub links of a build', () => {
  it('keep the slashes of a branch, each part percent-encoded', () => {
    expect(links('feature/x').targetBranch).toBe('https://github.com/acme/shop/tree/feature/x');
    expect(links('a#b').targetBranch).toBe('https://github.com/acme/shop/tree/a%23b');
    expect(links('q?x=1').targetBranch).toBe('https://github.com/acme/shop/tree/q%3Fx%3D1');
    expect(links('100%').targetBranch).toBe('https://github.com/acme/shop/tree/100%25');
    expect(links('fix/ünï code').targetBranch).toBe(
      'https://github.com/acme/shop/tree/fix/%C3%BCn%C3%AF%20code',
    );
  });

  it('never leave the repository, whatever the branch', () => {
    for (const branch of ['../../etc/passwd', '..', '.', 'a//b', '/lead', 'trail/', 'a/./b']) {
      const link = new URL(links(branch).targetBranch);
      expect(link.origin + link.pathname, branch).toBe('https://github.com/acme/shop/branches/all');
      expect(link.searchParams.get('query'), branch).toBe(branch);
    }
    // What a browser makes of every link: still under the repository.
    for (const branch of ['a#b', 'q?x=1', '100%', 'x/%2e%2e/%2e%2e/y']) {
      const link = new URL(links(branch).targetBranch);
      expect(link.pathname.startsWith('/acme/shop/tree/'), branch).toBe(true);
      expect(link.hash + link.search, branch).toBe('');
    }
  });

  it('link the repo, the pull request and the commit', () => {
    expect(links('main', 'acme/shop', 12)).toEqual({
      repo: 'https://github.com/acme/shop',
      targetBranch: 'https://github.com/acme/shop/tree/main',
      pr: 'https://github.com/acme/shop/pull/12',
      commit: `https://github.com/acme/shop/commit/${'a'.repeat(40)}`,
    });
    expect(links('main').pr).toBeNull();
  });

  it('search GitHub for a repo that is no owner/name', () => {
    for (const repo of ['../x', 'a/b/c', 'a#b', '']) {
      for (const link of Object.values(links('main', repo, 1))) {
        expect(new URL(link ?? '').pathname, repo).toBe('/search');
      }
    }
  });

  it('encode names for links of this site', () => {
    expect(pathSegments('acme/web.site-x')).toBe('acme/web.site-x');
    expect(pathSegments('a b/c?d')).toBe('a%20b/c%3Fd');
    expect(pathSegments('../x')).toBeUndefined();
  });
});
