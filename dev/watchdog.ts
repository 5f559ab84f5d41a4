/**
 * The companion process of a sandbox, started detached by startSandbox:
 * `watchdog.ts <runDir> <ownerPid>`. It provisions the cluster's volumes, and tears the sandbox
 * down once the process that owns it is gone, however that process ended.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { readSandboxInfo, teardownSandbox } from './sandbox.js';
import { startVolumeProvisioner } from './volume-provisioner.js';
import { isAlive } from './tools.js';

const [runDir, ownerArg] = process.argv.slice(2);
const ownerPid = Number(ownerArg);
if (!runDir || !Number.isInteger(ownerPid)) {
  console.error('usage: watchdog.ts <runDir> <ownerPid>');
  process.exit(2);
}

// A normal stop kills this process first; SIGTERM must not trigger a teardown.
process.on('SIGTERM', () => process.exit(0));

const sandbox = await readSandboxInfo(runDir);
if (sandbox) {
  const config = new KubeConfig();
  config.loadFromFile(sandbox.kube.kubeconfig);
  config.setCurrentContext(sandbox.kube.context);
  await startVolumeProvisioner(config, (line) =>
    console.log(`${new Date().toISOString()} volumes: ${line}`),
  );
}
console.log(`${new Date().toISOString()} watching ${runDir} for owner ${ownerPid}`);

const timer = setInterval(() => {
  // Stopped or torn down by someone else: nothing left to watch. Exiting, not just clearing the
  // timer: the volume provisioner's watch would keep this process alive for ever.
  if (!existsSync(join(runDir, 'sandbox.json'))) process.exit(0);
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
