/**
 * Watches the process that owns a sandbox and tears the sandbox down once that process is gone,
 * however it ended. Started detached by startSandbox: `watchdog.ts <runDir> <ownerPid>`.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readSandboxInfo, teardownSandbox } from './sandbox.js';
import { isAlive } from './tools.js';

const [runDir, ownerArg] = process.argv.slice(2);
const ownerPid = Number(ownerArg);
if (!runDir || !Number.isInteger(ownerPid)) {
  console.error('usage: watchdog.ts <runDir> <ownerPid>');
  process.exit(2);
}

// A normal stop kills this process first; SIGTERM must not trigger a teardown.
process.on('SIGTERM', () => process.exit(0));

const timer = setInterval(() => {
  if (!existsSync(join(runDir, 'sandbox.json'))) {
    clearInterval(timer);
    return;
  }
  if (isAlive(ownerPid)) return;
  clearInterval(timer);
  void (async () => {
    const info = await readSandboxInfo(runDir);
    if (info) {
      console.log(`${new Date().toISOString()} owner ${ownerPid} is gone: tearing ${info.id} down`);
      await teardownSandbox(info);
      await rm(runDir, { recursive: true, force: true });
    }
  })().catch((error: unknown) => {
    console.error(`teardown failed: ${String(error)}`);
    process.exitCode = 1;
  });
}, 1000);
