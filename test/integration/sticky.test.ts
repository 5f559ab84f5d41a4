/**
 * Sticky branches against the real sandbox and a fake GitHub: the fleet makes sure the head
 * commit of every sticky branch has a build, at start and again when a head moves.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;
const sha = () => randomBytes(20).toString('hex');
const heads = { main: sha(), '16.0': sha(), 'feature/x': sha() };

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/shop',
        branch: 'main|16\\.0',
        sticky: true,
        builds: [{ image: 'ghcr.io/acme/odoo:16.0' }],
      },
      { repo: 'acme/shop', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
    ],
  });
  env.github.heads.set('acme/shop', new Map(Object.entries(heads)));
  await env.startWorker({ RUNBOAT_STICKY_INTERVAL_SECONDS: '2' });
});

afterAll(async () => {
  await env?.close();
});

const nameOf = (branch: string, gitCommit: string) =>
  buildName({ repo: 'acme/shop', targetBranch: branch, pr: null, gitCommit });

describe('sticky branches', () => {
  it('get a build of their head commit, and of each new head', async () => {
    await env.waitForStatus(nameOf('main', heads.main), 'stopped', 60_000);
    await env.waitForStatus(nameOf('16.0', heads['16.0']), 'stopped', 60_000);
    expect(await env.deployment(nameOf('feature/x', heads['feature/x']))).toBeUndefined();

    const moved = sha();
    env.github.heads.get('acme/shop')?.set('main', moved);
    await env.waitForStatus(nameOf('main', moved), 'stopped', 60_000);
    await eventually(async () => {
      const list = await env.kube.apps.listNamespacedDeployment({ namespace: env.namespace });
      expect(list.items.length).toBe(3);
    });
  });
});
