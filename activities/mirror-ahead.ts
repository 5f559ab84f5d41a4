/**
 * A transition mirrored by the activity that sees it happen, ahead of the workflow: the init Job
 * complete (`initializing` → `stopped`) and the pod ready (`starting` → `started`). The workflow
 * mirrors the same transition again once the activity has returned (docs/architecture.md,
 * "Kubernetes is the mirror"); this only shows it sooner. The write is conditional: it lands only
 * while the Deployment still shows the status the activity expects, so that an undeploy or a
 * reset the workflow mirrored meanwhile is never overwritten.
 */
import { annotations, STATUS_LABEL, type BuildStatus, type InitStatus } from '../domain/build.js';
import { describeKubeError, isKubeStatus, jsonPatch, type KubeClients } from '../lib/kube.js';
import type { Logger } from '../lib/logger.js';

/** What {@link mirrorAhead} writes. */
export interface AheadMirror {
  status: BuildStatus;
  initStatus?: InitStatus;
  /** '' clears it. */
  failureReason?: string;
}

/** A label's or an annotation's key as a JSON Pointer segment (RFC 6901). */
function pointer(...segments: string[]): string {
  return segments.map((segment) => '/' + segment.replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

/**
 * Writes `mirror` onto the build's Deployment if its status label is still `expected`. True
 * when written; false when the Deployment shows something else, is gone, or the write failed
 * (logged: the workflow's own mirror follows anyway).
 */
export async function mirrorAhead(
  kube: KubeClients,
  namespace: string,
  name: string,
  expected: BuildStatus,
  mirror: AheadMirror,
  log: Logger,
): Promise<boolean> {
  const annotated: [string, string | undefined][] = [
    [annotations.initStatus, mirror.initStatus],
    [annotations.failureReason, mirror.failureReason],
  ];
  const body = [
    { op: 'test', path: pointer('metadata', 'labels', STATUS_LABEL), value: expected },
    { op: 'replace', path: pointer('metadata', 'labels', STATUS_LABEL), value: mirror.status },
    ...annotated
      .filter((entry): entry is [string, string] => entry[1] !== undefined)
      .map(([key, value]) => ({
        op: 'add',
        path: pointer('metadata', 'annotations', key),
        value,
      })),
  ];
  try {
    await kube.apps.patchNamespacedDeployment({ name, namespace, body }, jsonPatch);
    return true;
  } catch (error) {
    // 422: the test failed (the build moved on); 404: the Deployment is gone.
    if (!isKubeStatus(error, 422) && !isKubeStatus(error, 404)) {
      log.warn(
        { build: name, reason: describeKubeError(error) },
        `${mirror.status} not shown ahead`,
      );
    }
    return false;
  }
}
