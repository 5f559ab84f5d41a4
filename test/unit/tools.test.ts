import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureTools, toolOverrides, toolsDir } from '../../dev/tools.js';

describe('ensureTools', () => {
  it('uses binaries the user points at, without building anything', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runboat-tools-'));
    const env: NodeJS.ProcessEnv = { RUNBOAT_TOOLS_DIR: join(dir, 'empty-cache') };
    for (const [key, variable] of Object.entries(toolOverrides)) {
      const path = join(dir, key);
      await writeFile(path, '#!/bin/sh\n', { mode: 0o755 });
      env[variable] = path;
    }
    const lines: string[] = [];
    const tools = await ensureTools({ env, log: (line) => lines.push(line) });
    expect(tools.kubeApiserver).toBe(join(dir, 'kubeApiserver'));
    expect(tools.kwokctl).toBe(join(dir, 'kwokctl'));
    expect(tools.temporal).toBe(join(dir, 'temporal'));
    expect(lines).toContain(`etcd: ${join(dir, 'etcd')} (from RUNBOAT_ETCD_BIN)`);
  });

  it('names the variable when it points at nothing', async () => {
    await expect(
      ensureTools({ env: { RUNBOAT_TEMPORAL_BIN: '/nonexistent/temporal' }, log: () => {} }),
    ).rejects.toThrow('RUNBOAT_TEMPORAL_BIN=/nonexistent/temporal: no such file');
  });
});

describe('toolsDir', () => {
  it('prefers RUNBOAT_TOOLS_DIR, then XDG_CACHE_HOME', () => {
    expect(toolsDir({ RUNBOAT_TOOLS_DIR: '/opt/tools' })).toBe('/opt/tools');
    expect(toolsDir({ XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/runboat');
  });
});
