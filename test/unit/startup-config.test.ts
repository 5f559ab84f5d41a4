import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function start(entry: string, env: Record<string, string>) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(root, entry)], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

// Each test starts real processes (tsx compiles on the fly): seconds on a loaded machine.
describe('a process with a wrong configuration', { timeout: 60_000 }, () => {
  it('stops at start with one message naming the field', () => {
    const api = start('api/main.ts', { RUNBOAT_API_PORT: 'eighty', RUNBOAT_WEBHOOK_SECRET: 's' });
    expect(api.status).toBe(2);
    expect(api.stderr.trim()).toMatch(
      /^runboat api: bad configuration: environment RUNBOAT_API_PORT: /,
    );

    const worker = start('worker/main.ts', { RUNBOAT_WORKER_ROLES: 'builds,everything' });
    expect(worker.status).toBe(2);
    expect(worker.stderr).toMatch(
      /runboat worker: bad configuration: environment RUNBOAT_WORKER_ROLES/,
    );
  });

  it('refuses to run the API without a webhook secret unless told it is insecure', () => {
    const api = start('api/main.ts', {});
    expect(api.status).toBe(2);
    expect(api.stderr).toContain('RUNBOAT_WEBHOOK_SECRET: required');
  });

  it('never prints a secret it was given', () => {
    const api = start('api/main.ts', {
      RUNBOAT_WEBHOOK_SECRET: 'hush-hush-secret',
      RUNBOAT_ADMIN_USER: 'admin',
      RUNBOAT_ADMIN_TOKEN: 'short',
    });
    expect(api.status).toBe(2);
    expect(api.stderr).toMatch(/RUNBOAT_ADMIN_TOKEN/);
    expect(api.stderr + api.stdout).not.toContain('hush-hush-secret');
    expect(api.stderr + api.stdout).not.toContain('short"');
  });
});
