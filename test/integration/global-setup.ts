/**
 * Starts one sandbox (a real Temporal dev server and a real kwok Kubernetes cluster) for the whole
 * integration run and tears it down at the end. `RUNBOAT_TEST_SANDBOX=<run directory>` reuses a
 * sandbox that is already running (e.g. one started by `npm run sandbox`) instead.
 */
import type { TestProject } from 'vitest/node';
import { readSandboxInfo, startSandbox, type SandboxInfo } from '../../dev/sandbox.js';

declare module 'vitest' {
  export interface ProvidedContext {
    sandbox: SandboxInfo;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | void> {
  const log = (line: string) => process.stderr.write(`[sandbox] ${line}\n`);
  const existing = process.env.RUNBOAT_TEST_SANDBOX;
  if (existing) {
    const info = await readSandboxInfo(existing);
    if (!info) throw new Error(`RUNBOAT_TEST_SANDBOX=${existing}: no sandbox.json there`);
    log(`reusing sandbox ${info.id}`);
    project.provide('sandbox', info);
    return;
  }
  const sandbox = await startSandbox({ log });
  const { tools: _tools, stop, ...info } = sandbox;
  project.provide('sandbox', info);
  return stop;
}
