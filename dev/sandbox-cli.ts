/**
 * `npm run sandbox -- <command>`: look after local sandboxes (`npm start` starts one).
 *
 *   list   show the sandboxes of this checkout and whether their owner is alive
 *   down   tear down every sandbox of this checkout (or one: `down <id>`)
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readSandboxInfo, sandboxRoot, teardownSandbox } from './sandbox.js';
import { isAlive } from './tools.js';

async function list(): Promise<void> {
  const root = sandboxRoot();
  const entries = await readdir(root).catch(() => []);
  if (entries.length === 0) console.log(`no sandbox in ${root}`);
  for (const entry of entries) {
    const info = await readSandboxInfo(join(root, entry));
    if (!info) continue;
    const state = isAlive(info.ownerPid) ? `owned by pid ${info.ownerPid}` : 'owner gone';
    console.log(
      `${info.id}  ${state}  temporal ${info.temporal.address}  kube ${info.kube.server}`,
    );
  }
}

async function down(id: string | undefined): Promise<void> {
  const root = sandboxRoot();
  for (const entry of await readdir(root).catch(() => [])) {
    const info = await readSandboxInfo(join(root, entry));
    if (!info || (id !== undefined && info.id !== id)) continue;
    await teardownSandbox(info);
    await rm(info.runDir, { recursive: true, force: true });
    console.log(`${info.id} torn down`);
  }
}

const commands: Record<string, (arg?: string) => Promise<void>> = { list, down };

const [command = 'list', arg] = process.argv.slice(2);
const run = commands[command];
if (!run) {
  console.error(`unknown command "${command}"; use one of: ${Object.keys(commands).join(', ')}`);
  process.exit(2);
}
run(arg).catch((error: unknown) => {
  console.error(`[sandbox] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
