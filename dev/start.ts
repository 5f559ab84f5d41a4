/**
 * `npm start`: runs the system locally. Provisions the tools on first use, starts a sandbox
 * (Temporal dev server + kwok Kubernetes cluster) and keeps it until Ctrl-C.
 */
import { untilInterrupted } from './run-command.js';
import { describeSandbox, startSandbox } from './sandbox.js';

async function main(): Promise<void> {
  const sandbox = await startSandbox({ keep: process.env.RUNBOAT_SANDBOX_KEEP === '1' });
  console.log(`\nrunboat sandbox ${sandbox.id} is up.\n\n${describeSandbox(sandbox)}\n`);
  console.log('Press Ctrl-C to stop; everything started here is stopped with it.');
  const signal = await untilInterrupted();
  console.log(`\n${signal}: stopping…`);
  await sandbox.stop();
}

main().catch((error: unknown) => {
  console.error(`[start] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
