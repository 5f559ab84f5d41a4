/**
 * A volume provisioner for the sandbox cluster, which has no storage of its own: a default
 * StorageClass whose claims get a hostPath PersistentVolume each, bound by Kubernetes' own
 * PV controller, and deleted again once released. Pods are fake, so nothing is ever written.
 */
import {
  makeInformer,
  type KubeConfig,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
} from '@kubernetes/client-node';
import { CoreV1Api, StorageV1Api } from '@kubernetes/client-node';
import { isKubeStatus, superviseInformer } from '../lib/kube.js';

/** Name of the sandbox's default StorageClass. */
export const SANDBOX_STORAGE_CLASS = 'sandbox';
const PROVISIONER = 'runboat.dev/sandbox';

/** Creates the default StorageClass (before any claim is made, so that claims default to it). */
export async function createSandboxStorageClass(config: KubeConfig): Promise<void> {
  const storage = config.makeApiClient(StorageV1Api);
  try {
    await storage.createStorageClass({
      body: {
        metadata: {
          name: SANDBOX_STORAGE_CLASS,
          annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
        },
        provisioner: PROVISIONER,
        reclaimPolicy: 'Delete',
        volumeBindingMode: 'Immediate',
      },
    });
  } catch (error) {
    if (!isKubeStatus(error, 409)) throw error;
  }
}

/** Runs until stopped: provisions a volume per pending claim, deletes released volumes. */
export async function startVolumeProvisioner(
  config: KubeConfig,
  log: (line: string) => void,
): Promise<{ stop(): Promise<void> }> {
  const core = config.makeApiClient(CoreV1Api);
  const claims = makeInformer<V1PersistentVolumeClaim>(
    config,
    '/api/v1/persistentvolumeclaims',
    () => core.listPersistentVolumeClaimForAllNamespaces(),
  );
  const volumes = makeInformer<V1PersistentVolume>(config, '/api/v1/persistentvolumes', () =>
    core.listPersistentVolume(),
  );

  const provision = async (claim: V1PersistentVolumeClaim) => {
    const uid = claim.metadata?.uid;
    if (!uid || claim.status?.phase !== 'Pending' || claim.spec?.volumeName) return;
    if (claim.spec?.storageClassName !== SANDBOX_STORAGE_CLASS) return;
    try {
      await core.createPersistentVolume({
        body: {
          metadata: {
            name: `pv-${uid}`,
            annotations: { 'pv.kubernetes.io/provisioned-by': PROVISIONER },
          },
          spec: {
            capacity: { storage: claim.spec.resources?.requests?.storage ?? '1Gi' },
            accessModes: claim.spec.accessModes ?? ['ReadWriteOnce'],
            persistentVolumeReclaimPolicy: 'Delete',
            storageClassName: SANDBOX_STORAGE_CLASS,
            hostPath: { path: `/nonexistent/runboat-sandbox/${uid}` },
            claimRef: {
              apiVersion: 'v1',
              kind: 'PersistentVolumeClaim',
              namespace: claim.metadata?.namespace,
              name: claim.metadata?.name,
              uid,
            },
          },
        },
      });
    } catch (error) {
      if (!isKubeStatus(error, 409)) log(`provisioning for claim ${uid} failed: ${String(error)}`);
    }
  };

  const reclaim = async (volume: V1PersistentVolume) => {
    const ours = volume.metadata?.annotations?.['pv.kubernetes.io/provisioned-by'] === PROVISIONER;
    if (!ours || volume.status?.phase !== 'Released' || !volume.metadata?.name) return;
    await core.deletePersistentVolume({ name: volume.metadata.name }).catch((error: unknown) => {
      if (!isKubeStatus(error, 404)) log(`deleting volume ${volume.metadata?.name} failed`);
    });
  };

  claims.on('add', (claim) => void provision(claim));
  claims.on('update', (claim) => void provision(claim));
  volumes.on('add', (volume) => void reclaim(volume));
  volumes.on('update', (volume) => void reclaim(volume));
  const supervised = await Promise.all(
    ([claims, volumes] as const).map((informer) =>
      superviseInformer(informer, (error) => log(`watch failed (${String(error)}); restarting`)),
    ),
  );
  return {
    async stop() {
      await Promise.all(supervised.map((s) => s.stop()));
    },
  };
}
