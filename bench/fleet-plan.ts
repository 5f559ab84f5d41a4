/**
 * What one plan of the fleet costs the builds worker's thread at the size of a large farm: N lean
 * build Deployments (default 10,000, as the worker's informer caches them; 150 started, the rest
 * stopped) handed to the fleet's `fleetPlan` activity as its cache, planned again and again with
 * the limits of the scale benchmark (150 started, N deployed) and one build beyond each. A plan
 * runs on the worker's main thread after every burst of changes (200 ms apart at most): while it
 * runs, no local activity of any build (a deploy, a mirror, a scale) can. Also the time to make a
 * whole build view (the API's shape, `buildView`) of every Deployment, for comparison. Prints the
 * figures and writes bench/reports/fleet-plan.{json,md}.
 *
 *   npx tsx bench/fleet-plan.ts [--builds 10000] [--plans 40]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { V1Deployment } from '@kubernetes/client-node';
import { createFleetActivities } from '../activities/fleet.js';
import { buildView } from '../domain/build-view.js';
import { buildName } from '../domain/names.js';
import { createKubeClients, leanDeployment } from '../lib/kube.js';
import { createLogger } from '../lib/logger.js';
import { describeMachine, legacyDeployment, summary, writeReport } from './bench-kit.js';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: '10000' },
    plans: { type: 'string', default: '40' },
  },
});
const N = Number(args.builds);
const PLANS = Number(args.plans);
const STARTED = Math.min(150, Math.floor(N / 2));
const log = (line: string) => console.log(`[fleet-plan] ${line}`);

/** N Deployments as the informer caches them: cut down, times as Dates. */
function cachedDeployments(): V1Deployment[] {
  return Array.from({ length: N }, (_, i) => {
    const commit = {
      repo: `acme/legacy-${i % 10}`,
      targetBranch: `branch-${Math.floor(i / 10) % 100}`,
      pr: null,
      gitCommit: randomBytes(20).toString('hex'),
    };
    const written = legacyDeployment({
      name: buildName(commit),
      ...commit,
      lastScaled: new Date(Date.now() - (N - i) * 60_000).toISOString(),
    });
    if (i < STARTED) {
      written.spec!.replicas = 1;
      written.status = { readyReplicas: 1 };
    }
    // As read from the API server: JSON, then cut down, its times as Dates.
    const lean = leanDeployment(JSON.parse(JSON.stringify(written)) as V1Deployment);
    lean.metadata!.creationTimestamp = new Date(Date.now() - (N - i) * 60_000);
    return lean;
  });
}

async function main(): Promise<void> {
  const deployments = cachedDeployments();
  const fleet = createFleetActivities({
    // Never called: the cache is there.
    kube: createKubeClients({}),
    namespace: 'bench',
    buildDomain: 'example.com',
    repos: () => [],
    logger: createLogger('warn', 'bench'),
    deploymentCache: () => deployments,
    // Only the sticky heads start builds: not planned here.
    ensureBuild: () => Promise.reject(new Error('no build is started by a plan')),
  });
  const limits = { maxStarted: STARTED - 1, maxDeployed: N - 1 };
  const plans: number[] = [];
  let last = { stop: 0, undeploy: 0 };
  for (let i = 0; i < PLANS + 5; i++) {
    const t0 = performance.now();
    const plan = await fleet.fleetPlan({ limits, inFlight: {} });
    const ms = performance.now() - t0;
    if (i >= 5) plans.push(ms);
    last = { stop: plan.stop.length, undeploy: plan.undeploy.length };
  }
  const views: number[] = [];
  for (let i = 0; i < PLANS + 5; i++) {
    const t0 = performance.now();
    deployments.map((deployment) => buildView(deployment, 'example.com'));
    const ms = performance.now() - t0;
    if (i >= 5) views.push(ms);
  }
  const plan = summary(plans);
  const view = summary(views);
  log(
    `${N} builds: a plan ${plan.median.toFixed(1)} ms (p99 ${plan.p99.toFixed(1)}), ` +
      `evicting ${last.stop} stop and ${last.undeploy} undeploy; ` +
      `a build view of each ${view.median.toFixed(1)} ms (p99 ${view.p99.toFixed(1)})`,
  );
  const markdown = [
    `# One fleet plan at ${N} builds`,
    '',
    `${new Date().toISOString()}, ${describeMachine()}. ${N} lean build Deployments as the builds worker's informer caches them (${STARTED} started), the fleet's \`fleetPlan\` activity called in this process with the cache, limits one below (${limits.maxStarted} started, ${limits.maxDeployed} deployed); ${PLANS} calls after 5 to warm up, on the same cached objects (between two plans of a burst, the cache replaces only the Deployments that changed).`,
    '',
    '`npx tsx bench/fleet-plan.ts` ([bench/fleet-plan.ts](../fleet-plan.ts))',
    '',
    '| Figure | Measured |',
    '| --- | --- |',
    `| one plan (the worker's thread held) | median ${plan.median.toFixed(1)} ms, p99 ${plan.p99.toFixed(1)} ms (n=${plan.n}); evicts ${last.stop} to stop and ${last.undeploy} to undeploy |`,
    `| a whole build view (\`buildView\`) of every Deployment | median ${view.median.toFixed(1)} ms, p99 ${view.p99.toFixed(1)} ms (n=${view.n}) |`,
    '',
  ].join('\n');
  await writeReport(
    'fleet-plan',
    { builds: N, started: STARTED, limits, plan, view, evicts: last },
    markdown,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
