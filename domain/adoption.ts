/**
 * The state of a build read back from Kubernetes, for a workflow that adopts a Deployment it did
 * not create (after Temporal lost its history, or from a namespace run by the Python runboat).
 */
import { annotations, type InitStatus } from './build.js';
import { commitOf, type DeploymentLike } from './build-view.js';
import { buildView } from './build-view.js';
import type { BuildState } from './messages.js';
import { buildSlug } from './names.js';

/** The highest generation among Job names `<build>-<infix>-<n>`, or 0. */
function highestGeneration(build: string, infix: string, jobNames: readonly string[]): number {
  const prefix = `${build}-${infix}-`;
  let highest = 0;
  for (const name of jobNames) {
    if (!name.startsWith(prefix)) continue;
    const generation = Number(name.slice(prefix.length));
    if (Number.isInteger(generation)) highest = Math.max(highest, generation);
  }
  return highest;
}

/**
 * The state an adopting workflow starts from. An init (or image build) still running keeps its
 * generation, so the workflow's activity adopts that Job instead of creating another.
 */
export function adoptedState(deployment: DeploymentLike, jobNames: readonly string[]): BuildState {
  const view = buildView(deployment, '');
  const name = view.name;
  const commit = commitOf(deployment);
  const initStatus = (deployment.metadata?.annotations?.[annotations.initStatus] ??
    'todo') as InitStatus;
  const initJobs = highestGeneration(name, 'init', jobNames);
  const buildJobs = highestGeneration(name, 'build', jobNames);
  return {
    name,
    slug: buildSlug(commit),
    commit,
    status: view.status,
    initStatus,
    initGeneration: view.status === 'initializing' ? Math.max(0, initJobs - 1) : initJobs,
    cleanupGeneration: highestGeneration(name, 'cleanup', jobNames),
    // An image build under way keeps its generation too: the build activity adopts its Job.
    buildGeneration: view.status === 'building' ? Math.max(0, buildJobs - 1) : buildJobs,
    failureReason: view.failure_reason,
    lastScaled: view.last_scaled,
    deployLink: '',
  };
}
