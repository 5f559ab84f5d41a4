/**
 * `npm run build`: the release in `dist/`. TypeScript compiled to JavaScript (`tsconfig.build.json`),
 * the files read at run time next to the code that reads them (the UI's templates and static
 * files, the default kubefiles), and the workflow bundle prebuilt, so that a production worker
 * starts without webpack work and with no development dependency (see docs/operations.md).
 */
import { cp, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { runCommand } from './run-command.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(projectRoot, 'dist');

/** Files read at run time, relative to the project root, copied to the same place under dist/. */
const assets = ['api/ui/templates', 'api/ui/static', 'kubefiles/default'];

async function main(): Promise<void> {
  const started = Date.now();
  const step = (message: string) =>
    console.log(`[build] ${message} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  await rm(dist, { recursive: true, force: true });
  await runCommand(process.execPath, [
    join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    join(projectRoot, 'tsconfig.build.json'),
  ]);
  step('compiled TypeScript into dist/');
  for (const asset of assets) {
    await cp(join(projectRoot, asset), join(dist, asset), { recursive: true });
  }
  step(`copied ${assets.join(', ')}`);
  // The bundle is made from the compiled workflows: exactly the code that ships.
  const { code } = await bundleWorkflowCode({
    workflowsPath: join(dist, 'workflows', 'index.js'),
    logger: new DefaultLogger('WARN'),
  });
  await writeFile(join(dist, 'workflow-bundle.js'), code);
  step(
    `bundled the workflows into dist/workflow-bundle.js (${Math.round(code.length / 1024)} KiB)`,
  );
}

main().catch((error: unknown) => {
  console.error(`[build] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
