/**
 * Benchmark of the UI with many builds: a sandbox (kwok cluster, Temporal dev server) whose build
 * namespace holds N build Deployments of one repo (default 1,000; written with the labels and
 * annotations the build index reads, as the workflows write them), the real API process reading
 * them through its informer, and Chromium opening the repo page and a search several times. For
 * each load: the server's answer (request to first byte), the page loaded (navigation start to
 * the load event), and the page live (until the build event stream's replay of every build has
 * been applied: the first fleet summary event, sent after the replay). The target: the repo page
 * loaded in under 1 s (docs/ui.md, "Pages"). Writes bench/reports/ui-render.{json,md}.
 *
 *   npm run bench:ui -- [--builds 1000] [--loads 7]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type Page } from 'playwright-core';
import { annotations, BUILD_LABEL, CLEANUP_FINALIZER, STATUS_LABEL } from '../domain/build.js';
import { buildName } from '../domain/names.js';
import { startSandbox } from '../dev/sandbox.js';
import { spawnApi } from '../dev/worker-process.js';
import { createKubeClients } from '../lib/kube.js';
import { describeMachine, median, writeReport } from './bench-kit.js';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: '1000' },
    loads: { type: 'string', default: '7' },
  },
});
const count = Number(args.builds);
const loads = Number(args.loads);
const REPO = 'acme/shop';
const TARGET_MS = 1000;

/** One build of the benchmark's repo: 30 % on 20 branches, 70 % on pull requests (2 each). */
function buildAt(i: number) {
  const branchBuilds = Math.round(count * 0.3);
  const onBranch = i < branchBuilds;
  const targetBranch = onBranch ? `feature-${i % 20}` : '16.0';
  const pr = onBranch ? null : 1 + Math.floor((i - branchBuilds) / 2);
  const gitCommit = randomBytes(20).toString('hex');
  const name = buildName({ repo: REPO, targetBranch, pr, gitCommit });
  const initStatus = i % 20 === 0 ? 'failed' : i % 50 === 1 ? 'todo' : 'succeeded';
  return { name, targetBranch, pr, gitCommit, initStatus };
}

/** A page load as the browser measured it, in milliseconds from the navigation's start. */
interface Load {
  firstByteMs: number;
  loadedMs: number;
  liveMs: number;
  /** Cards the server rendered, and those on the page once live (the same, or a bug). */
  servedCards: number;
  cards: number;
  htmlKiB: number;
}

async function measure(page: Page, url: string): Promise<Load> {
  await page.goto('about:blank');
  const response = await page.goto(url, { waitUntil: 'load' });
  const servedCards = ((await response?.text()) ?? '').split('<article class="card ').length - 1;
  // The first summary event comes after the replay of every build; app.js applies the events in
  // order, so once the summary changed, the page has taken the whole replay in.
  // Polled from here: the page's policy (no eval) refuses Playwright's waitForFunction. Scripts
  // for the page are text: the project's TypeScript has no DOM types.
  const deadline = Date.now() + 60_000;
  while (!(await page.evaluate('window.liveAt'))) {
    if (Date.now() > deadline) throw new Error(`${url}: no fleet summary event within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const measured = (await page.evaluate(`(() => {
    const [nav] = performance.getEntriesByType('navigation');
    return {
      firstByteMs: nav.responseStart - nav.startTime,
      loadedMs: nav.loadEventEnd - nav.startTime,
      liveMs: window.liveAt - nav.startTime,
      cards: document.querySelectorAll('.card').length,
      htmlKiB: nav.transferSize / 1024,
    };
  })()`)) as Omit<Load, 'servedCards'>;
  return { ...measured, servedCards };
}

async function main(): Promise<void> {
  const sandbox = await startSandbox({ log: (line) => console.log(`[sandbox] ${line}`) });
  const work = await mkdtemp(join(tmpdir(), 'runboat-bench-ui-'));
  let stopApi: (() => Promise<string>) | undefined;
  const browser = await chromium.launch({
    executablePath: process.env.RUNBOAT_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'],
  });
  try {
    const kube = createKubeClients({
      kubeconfig: sandbox.kube.kubeconfig,
      context: sandbox.kube.context,
    });
    const namespace = `bench-ui-${randomBytes(3).toString('hex')}`;
    await kube.core.createNamespace({ body: { metadata: { name: namespace } } });
    console.log(`[bench] writing ${count} build Deployments of ${REPO}`);
    const written = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < count) {
          const i = next++;
          const b = buildAt(i);
          await kube.apps.createNamespacedDeployment({
            namespace,
            body: {
              metadata: {
                name: b.name,
                labels: {
                  [BUILD_LABEL]: b.name,
                  [STATUS_LABEL]: b.initStatus === 'succeeded' ? 'stopped' : b.initStatus,
                },
                annotations: {
                  [annotations.repo]: REPO,
                  [annotations.targetBranch]: b.targetBranch,
                  [annotations.pr]: b.pr === null ? '' : String(b.pr),
                  [annotations.gitCommit]: b.gitCommit,
                  [annotations.initStatus]: b.initStatus,
                  [annotations.commitMessage]: `Change ${i}: a commit message long enough to be cut on a card of the page`,
                  [annotations.commitAuthor]: `Author ${i % 37}`,
                  ...(b.initStatus === 'failed'
                    ? { [annotations.failureReason]: 'init Job failed: exit code 3' }
                    : {}),
                },
                finalizers: [CLEANUP_FINALIZER],
              },
              spec: {
                replicas: 0,
                selector: { matchLabels: { [BUILD_LABEL]: b.name } },
                template: {
                  metadata: { labels: { [BUILD_LABEL]: b.name } },
                  spec: { containers: [{ name: 'odoo', image: 'odoo:16.0' }] },
                },
              },
            },
          });
        }
      }),
    );
    console.log(`[bench] written in ${((performance.now() - written) / 1000).toFixed(1)} s`);

    const reposFile = join(work, 'repos.yaml');
    await writeFile(
      reposFile,
      JSON.stringify([{ repo: 'acme/.*', branch: '.*', builds: [{ image: 'odoo:16.0' }] }]),
    );
    const api = await spawnApi(
      {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        RUNBOAT_TEMPORAL_ADDRESS: sandbox.temporal.address,
        RUNBOAT_TEMPORAL_NAMESPACE: sandbox.temporal.namespace,
        RUNBOAT_BUILDS_TASK_QUEUE: 'bench-ui-builds',
        RUNBOAT_INIT_TASK_QUEUE: 'bench-ui-init',
        RUNBOAT_BUILD_NAMESPACE: namespace,
        RUNBOAT_BUILD_DOMAIN: 'runboat.test',
        RUNBOAT_KUBECONFIG: sandbox.kube.kubeconfig,
        RUNBOAT_KUBE_CONTEXT: sandbox.kube.context,
        RUNBOAT_REPOS_FILE: reposFile,
        RUNBOAT_MAX_DEPLOYED: String(count * 2),
        RUNBOAT_WEBHOOK_SECRET: 'bench-ui',
        RUNBOAT_LOG_LEVEL: 'info',
      },
      join(work, 'api.log'),
    );
    stopApi = () => api.stop();
    for (;;) {
      const status = (await (await fetch(`${api.url}/api/v1/status`)).json()) as {
        deployed: number;
      };
      if (status.deployed >= count) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    console.log(`[bench] the API's index holds ${count} builds`);

    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    // The instant the first fleet summary event is applied (app.js changes #summary then).
    await page.addInitScript(`
      document.addEventListener('DOMContentLoaded', () => {
        const summary = document.getElementById('summary');
        if (!summary) return;
        new MutationObserver((records, observer) => {
          window.liveAt = performance.now();
          observer.disconnect();
        }).observe(summary, { subtree: true, childList: true, attributes: true });
      });
    `);
    const pages = {
      repo: `${api.url}/repos/${REPO}`,
      search: `${api.url}/?q=${encodeURIComponent('author 1')}`,
      branch: `${api.url}/repos/${REPO}?branch=feature-3`,
    };
    const results: Record<string, Load[]> = {};
    for (const [key, url] of Object.entries(pages)) {
      // One load first: Chromium's and the server's caches warm, as for any visitor after the first.
      await measure(page, url);
      results[key] = [];
      for (let n = 0; n < loads; n++) results[key].push(await measure(page, url));
      const loaded = median(results[key].map((l) => l.loadedMs));
      console.log(`[bench] ${key}: loaded in ${loaded.toFixed(0)} ms (median of ${loads})`);
      // What was measured, to look at (its first screen): /tmp/ui-render-<page>.png.
      await page.screenshot({ path: join(tmpdir(), `ui-render-${key}.png`) });
    }
    const row = (key: string, label: string) => {
      const list = results[key] ?? [];
      const m = (pick: (l: Load) => number) => median(list.map(pick)).toFixed(0);
      const cards = (l: Load) =>
        l.cards === l.servedCards ? `${l.cards}` : `${l.servedCards} served, ${l.cards} live`;
      return `| ${label} | ${cards(list.find((l) => l.cards !== l.servedCards) ?? list[0]!)} | ${median(list.map((l) => l.htmlKiB)).toFixed(0)} | ${m((l) => l.firstByteMs)} | ${m((l) => l.loadedMs)} | ${m((l) => l.liveMs)} |`;
    };
    const repoLoaded = median((results.repo ?? []).map((l) => l.loadedMs));
    const lines = [
      '# UI render time with many builds',
      '',
      `${new Date().toISOString()}; ${describeMachine()}; sandbox (kwok cluster, Temporal dev server), the API process (\`api/main.ts\`), headless Chromium.`,
      '',
      `${count} builds of ${REPO} (30 % on 20 branches, 70 % on pull requests of 2 builds each; 5 % failed, 2 % waiting for their init), each with a commit message and author, read by the API's informer. Each page opened ${loads} times after one warm-up load; medians, in milliseconds from the navigation's start.`,
      '',
      '| page | cards | HTML KiB | first byte | loaded | live (replay of every build applied) |',
      '| --- | --- | --- | --- | --- | --- |',
      row('repo', `repo page \`/repos/${REPO}\``),
      row('search', 'search `/?q=author 1`'),
      row('branch', 'one branch `?branch=feature-3`'),
      '',
      `Target: the repo page loaded in under ${TARGET_MS} ms: ${repoLoaded < TARGET_MS ? 'met' : 'missed'} (${repoLoaded.toFixed(0)} ms).`,
      '',
      'The repo page shows rows by pages (40 rows a page, the newest 6 cards of each row, a page of its own for the rest of a row); the build event stream still replays every build, which app.js skips for builds the page left out (docs/ui.md, "Pages").',
      '',
    ];
    console.log(lines.join('\n'));
    await writeReport(
      'ui-render',
      { builds: count, loads, targetMs: TARGET_MS, results },
      lines.join('\n'),
    );
  } finally {
    await browser.close();
    await stopApi?.();
    await sandbox.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
