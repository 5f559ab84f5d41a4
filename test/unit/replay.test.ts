/**
 * Every recorded history (`test/fixtures/histories/<version>/`, written by `npm run histories`)
 * replays against today's workflow code: a change that would make a running build fail its next
 * workflow task after an upgrade (a nondeterminism error) fails here, naming the history. See
 * docs/upgrades.md.
 *
 * The test proves it is live: a scratch copy of the workflows with two activity calls swapped
 * must fail to replay the same histories.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type WorkflowBundle,
} from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { historyFromJSON } from '../../dev/history-json.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const historiesDir = join(projectRoot, 'test', 'fixtures', 'histories');

interface ManifestEntry {
  file: string;
  path: string;
  workflowType: string;
  workflowId: string;
}

/** One recorded history: `<version>/<file>`. */
interface Fixture {
  name: string;
  path: string;
  workflowType: string;
  workflowId: string;
  file: string;
}

/** Every history of every version folder, as its manifest lists it. */
function fixtures(): Fixture[] {
  if (!existsSync(historiesDir)) return [];
  return readdirSync(historiesDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .flatMap((version) => {
      const dir = join(historiesDir, version.name);
      const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
        histories: ManifestEntry[];
      };
      return manifest.histories.map((entry) => ({
        name: `${version.name}/${entry.file}`,
        workflowType: entry.workflowType,
        workflowId: entry.workflowId,
        path: entry.path,
        file: join(dir, entry.file),
      }));
    });
}

/** Replays every fixture against one bundle; the error of each (undefined: it replayed). */
async function replayAll(
  bundle: WorkflowBundle,
  all: Fixture[],
): Promise<Map<string, Error | undefined>> {
  const histories = await Promise.all(
    all.map(async (fixture) => ({
      workflowId: fixture.workflowId,
      history: historyFromJSON(JSON.parse(await readFile(fixture.file, 'utf8'))),
    })),
  );
  const outcomes = new Map<string, Error | undefined>();
  let index = 0;
  // Histories are replayed one at a time, in order: the results come back in the same order.
  for await (const result of Worker.runReplayHistories(
    { workflowBundle: bundle, replayName: 'runboat-replay' },
    histories,
  )) {
    const fixture = all[index++];
    if (fixture) outcomes.set(fixture.name, result.error);
  }
  return outcomes;
}

const all = fixtures();
let outcomes: Map<string, Error | undefined>;

beforeAll(async () => {
  // The replay worker logs every replayed workflow's logs: keep the test output to failures.
  // (the error of a failing history is in its test's message).
  Runtime.install({
    logger: new DefaultLogger('ERROR'),
    telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
  });
  const bundle = await bundleWorkflowCode({
    workflowsPath: join(projectRoot, 'workflows', 'index.ts'),
    logger: new DefaultLogger('ERROR'),
  });
  outcomes = await replayAll({ code: bundle.code }, all);
}, 120_000);

describe('recorded histories', () => {
  it('exist for build and fleet workflows', () => {
    expect(all.some((fixture) => fixture.workflowType === 'buildWorkflow')).toBe(true);
    expect(all.some((fixture) => fixture.workflowType === 'fleetWorkflow')).toBe(true);
  });

  it('are each described in docs/upgrades.md', async () => {
    const docs = await readFile(join(projectRoot, 'docs', 'upgrades.md'), 'utf8');
    const missing = [...new Set(all.map((fixture) => fixture.path))].filter(
      (path) => !docs.includes(`| \`${path}\``),
    );
    expect(missing).toEqual([]);
  });

  it.each(all.map((fixture) => fixture.name))('%s replays on today’s workflow code', (name) => {
    expect(outcomes.has(name)).toBe(true);
    const error = outcomes.get(name);
    expect(error, `${name}: ${error?.name}: ${error?.message}`).toBeUndefined();
  });
});

describe('the replay test', () => {
  let scratch: string | undefined;

  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('fails when two activity calls of the build workflow are swapped', async () => {
    // A scratch copy of the workflows and the domain they import, bundled like the real ones.
    scratch = await mkdtemp(join(tmpdir(), 'runboat-replay-'));
    await cp(join(projectRoot, 'workflows'), join(scratch, 'workflows'), { recursive: true });
    await cp(join(projectRoot, 'domain'), join(scratch, 'domain'), { recursive: true });
    const file = join(scratch, 'workflows', 'build-workflow.ts');
    const source = await readFile(file, 'utf8');
    // The first two consecutive one-line activity calls, e.g. those that begin an undeploy.
    const pair = /^( *await short\.(\w+)\(.*\);)\n( *await short\.(\w+)\(.*\);)$/m.exec(source);
    expect(pair, 'two consecutive activity calls in workflows/build-workflow.ts').not.toBeNull();
    const [whole, first, firstName, second, secondName] = pair as unknown as string[];
    expect(firstName).not.toBe(secondName);
    await writeFile(file, source.replace(whole ?? '', `${second}\n${first}`));

    const swapped = await bundleWorkflowCode({
      workflowsPath: join(scratch, 'workflows', 'index.ts'),
      logger: new DefaultLogger('ERROR'),
      // Its packages (@temporalio/workflow…) are the project's.
      webpackConfigHook: (config) => ({
        ...config,
        resolve: {
          ...config.resolve,
          modules: [
            ...(config.resolve?.modules ?? ['node_modules']),
            join(projectRoot, 'node_modules'),
          ],
        },
      }),
    });
    // The build histories today's code replays: what fails now fails because of the swap.
    const builds = all.filter(
      (fixture) =>
        fixture.workflowType === 'buildWorkflow' &&
        outcomes.has(fixture.name) &&
        outcomes.get(fixture.name) === undefined,
    );
    const broken = await replayAll({ code: swapped.code }, builds);
    const failed = [...broken].filter(([, error]) => error !== undefined);
    console.log(
      `swapped ${firstName} and ${secondName}: ${failed.length} of ${builds.length} build histories fail to replay`,
    );
    expect(failed.length).toBeGreaterThan(0);
    for (const [name, error] of failed) expect(error?.name, name).toBe('DeterminismViolationError');
  }, 120_000);
});
