/**
 * The sandbox's watchdog (dev/watchdog.ts) ends once its sandbox is gone, even while its volume
 * provisioner still watches the cluster: a watchdog left behind by a sandbox stopped some other
 * way kept running (and watching) until someone killed it.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';

const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
const { kube } = inject('sandbox');
const cleanups: (() => Promise<void>)[] = [];

afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
});

describe('the sandbox watchdog', () => {
  it('exits once its sandbox state file is gone, though its provisioner is watching', async () => {
    const runDir = await mkdtemp(join(tmpdir(), 'watchdog-'));
    cleanups.push(() => rm(runDir, { recursive: true, force: true }));
    // Only what the watchdog reads: the cluster its provisioner watches. This process owns it,
    // so the watchdog never tears the (shared) test cluster down.
    await writeFile(join(runDir, 'sandbox.json'), JSON.stringify({ kube }));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(projectRoot, 'dev', 'watchdog.ts'), runDir, String(process.pid)],
      { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`watchdog never watched:\n${output}`)),
        30_000,
      );
      const read = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes(`watching ${runDir}`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', read);
      child.stderr.on('data', read);
    });
    // Still running while the sandbox is there.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(child.exitCode).toBeNull();

    await rm(join(runDir, 'sandbox.json'));
    const code = await Promise.race([
      exited,
      new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 5_000)),
    ]);
    expect(code).toBe(0);
  });
});
