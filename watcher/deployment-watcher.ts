/**
 * Watches the build Deployments and tells their workflows about drift they did not cause: a
 * Deployment being deleted behind the workflow's back (`kubectl delete`), which the finalizer
 * holds until the workflow has run the cleanup Job; a Deployment gone altogether (its finalizer
 * removed by hand), whose workflow still cleans up; and a Deployment scaled by hand, which the
 * workflow takes as a start or a stop. The watcher changes nothing in Kubernetes.
 * Drift: docs/architecture.md; what an operator does: docs/runbook.md.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import type { Client } from '@temporalio/client';
import { BUILD_LABEL, STATUS_LABEL } from '../domain/build.js';
import { driftSignal, type DriftEvent } from '../domain/messages.js';
import { makeDeploymentInformer, superviseInformer, type KubeClients } from '../lib/kube.js';
import type { Logger } from '../lib/logger.js';

/** Options of {@link startDeploymentWatcher}. */
export interface DeploymentWatcherOptions {
  kube: KubeClients;
  namespace: string;
  client: Client;
  logger: Logger;
}

/** A running watcher. */
export interface DeploymentWatcher {
  /**
   * The build Deployments as last seen (the informer's cache), cut to the fields the worker reads
   * (`leanDeployment` of lib/kube.ts): what the drift checks, the fleet and the adopter decide on.
   */
  deployments(): readonly V1Deployment[];
  stop(): Promise<void>;
}

/** Starts the informer on build Deployments; it restarts itself with backoff after errors. */
export async function startDeploymentWatcher(
  options: DeploymentWatcherOptions,
): Promise<DeploymentWatcher> {
  const { kube, namespace, client } = options;
  const log = options.logger.child({ component: 'watcher' });
  const informer = makeDeploymentInformer(kube, { namespace, labelSelector: BUILD_LABEL });
  // Deletions already reported, so that every later update of the same object stays quiet.
  const reported = new Set<string>();

  const signal = async (name: string, event: DriftEvent) => {
    try {
      await client.workflow.getHandle(name).signal(driftSignal, event);
      log.info({ build: name, drift: event.kind }, 'drift signalled');
    } catch (error) {
      log.warn({ build: name, drift: event.kind, err: error }, 'could not signal drift');
    }
  };

  const inspect = (deployment: V1Deployment) => {
    const name = deployment.metadata?.labels?.[BUILD_LABEL];
    if (!name) return;
    const label = deployment.metadata?.labels?.[STATUS_LABEL];
    if (deployment.metadata?.deletionTimestamp) {
      if (label === 'undeploying' || reported.has(name)) return;
      reported.add(name);
      void signal(name, { kind: 'deployment-deleting' });
      return;
    }
    // The workflow writes replicas and the status label in one patch: a disagreement between
    // them means someone scaled the Deployment by hand.
    const replicas = deployment.spec?.replicas ?? 0;
    const handStarted = replicas > 0 && label === 'stopped';
    const handStopped = replicas === 0 && (label === 'started' || label === 'starting');
    if (handStarted || handStopped) void signal(name, { kind: 'scaled', replicas });
  };

  informer.on('add', inspect);
  informer.on('update', inspect);
  informer.on('delete', (deployment) => {
    const name = deployment.metadata?.labels?.[BUILD_LABEL];
    if (!name) return;
    reported.delete(name);
    // Gone without its workflow undeploying it: someone removed the finalizer by hand. The
    // workflow still runs the cleanup Job and deletes what is left.
    if (deployment.metadata?.labels?.[STATUS_LABEL] !== 'undeploying') {
      void signal(name, { kind: 'deployment-gone' });
    }
  });
  const supervised = await superviseInformer(informer, (error, retryInMs) =>
    log.warn({ err: error, retryInMs }, 'deployment watch failed; restarting'),
  );
  return {
    deployments: () => informer.list(),
    stop: () => supervised.stop(),
  };
}
