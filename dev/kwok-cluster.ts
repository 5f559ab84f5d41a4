/**
 * A real Kubernetes control plane on loopback: kube-apiserver, kube-controller-manager,
 * kube-scheduler and etcd run as local processes by `kwokctl --runtime binary`, with kwok faking
 * the nodes and the pods' lifecycle (see kwok-stages.ts).
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { SANDBOX_KWOK_CRDS } from './kwok-logs.js';
import { sandboxStages } from './kwok-stages.js';
import { createSandboxStorageClass } from './volume-provisioner.js';
import { freePort } from './ports.js';
import { runCommand } from './run-command.js';
import type { Toolset } from './tools.js';
import { versions } from './versions.js';

/** Options of {@link startKwokCluster}. */
export interface KwokClusterOptions {
  /** Cluster name, unique on this machine (kwokctl keeps its state under `<workDir>/clusters`). */
  name: string;
  /** kwokctl's work directory (its `KWOK_WORKDIR`). */
  workDir: string;
  /** Where the kubeconfig of the cluster is written. */
  kubeconfig: string;
  tools: Toolset;
  /** Number of fake nodes. */
  nodes: number;
  /** How long a Job's pod runs before it ends, unless its pod asks otherwise. */
  jobRunMs: number;
}

/** A running cluster. */
export interface KwokCluster {
  name: string;
  kubeconfig: string;
  /** The kubeconfig context of the cluster. */
  context: string;
  /** The API server URL. */
  server: string;
}

function kwokEnv(workDir: string): NodeJS.ProcessEnv {
  return { ...process.env, KWOK_WORKDIR: workDir };
}

/**
 * kwokctl hands out ports counting down from 32767, so two clusters created at the same moment
 * would pick the same ones; ports chosen by the kernel do not collide that way.
 */
async function clusterPorts() {
  return {
    kubeApiserverPort: await freePort(),
    etcdPort: await freePort(),
    etcdPeerPort: await freePort(),
    kubeControllerManagerPort: await freePort(),
    kubeSchedulerPort: await freePort(),
    kwokControllerPort: await freePort(),
  };
}

async function configuration(options: KwokClusterOptions): Promise<string> {
  const { tools } = options;
  const kwokctl = {
    apiVersion: 'config.kwok.x-k8s.io/v1alpha1',
    kind: 'KwokctlConfiguration',
    options: {
      runtime: 'binary',
      kubeVersion: `v${versions.kubernetes}`,
      etcdVersion: versions.etcd,
      bindAddress: '127.0.0.1',
      kubeApiserverBinary: tools.kubeApiserver,
      kubeControllerManagerBinary: tools.kubeControllerManager,
      kubeSchedulerBinary: tools.kubeScheduler,
      kubectlBinary: tools.kubectl,
      etcdBinary: tools.etcd,
      kwokControllerBinary: tools.kwok,
      // Tests create hundreds of objects quickly; client-side throttling would only slow them.
      disableQPSLimits: true,
      // Pod logs are files chosen per namespace or pod by these resources (kwok-logs.ts).
      enableCRDs: [...SANDBOX_KWOK_CRDS],
      ...(await clusterPorts()),
    },
    componentsPatches: [
      // One instance each: leader election would only make a restarted controller-manager and
      // scheduler wait out their predecessor's lease (15 s) before doing anything.
      ...['kube-controller-manager', 'kube-scheduler'].map((name) => ({
        name,
        extraArgs: [{ key: 'leader-elect', value: 'false' }],
      })),
      // `kubectl logs` goes from kube-apiserver to the node's kubelet, here kwok's server: the
      // nodes give their InternalIP (kwok's address) and kwok's port (kwok-stages.ts), and the
      // API server must prefer that address to the nodes' unresolvable host names.
      { name: 'kwok-controller', extraArgs: [{ key: 'node-ip', value: '127.0.0.1' }] },
      {
        name: 'kube-apiserver',
        extraArgs: [
          { key: 'kubelet-preferred-address-types', value: 'InternalIP' },
          // The API server's default is a /24: 254 Services, where a farm has one a build.
          { key: 'service-cluster-ip-range', value: SERVICE_CLUSTER_IP_RANGE },
        ],
      },
    ],
  };
  return [JSON.stringify(kwokctl), ...sandboxStages({ jobRunMs: options.jobRunMs })].join(
    '\n---\n',
  );
}

/** The Services' virtual IPs: room for a million, as a cluster of kubeadm's defaults has. */
export const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/12';

function nodeManifest(name: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        type: 'kwok',
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
      },
    },
    status: {
      allocatable: { cpu: '1000', memory: '4Ti', pods: '10000' },
      capacity: { cpu: '1000', memory: '4Ti', pods: '10000' },
    },
  });
}

/** Runs kubectl against the cluster. */
export function kubectl(cluster: KwokCluster, tools: Toolset, args: string[]): Promise<string> {
  return runCommand(tools.kubectl, [
    '--kubeconfig',
    cluster.kubeconfig,
    '--context',
    cluster.context,
    ...args,
  ]);
}

/** Creates and starts the cluster, then its fake nodes, and waits until the nodes are Ready. */
export async function startKwokCluster(options: KwokClusterOptions): Promise<KwokCluster> {
  await mkdir(options.workDir, { recursive: true });
  const configPath = join(options.workDir, 'kwokctl.yaml');
  await writeFile(configPath, await configuration(options));
  await runCommand(
    options.tools.kwokctl,
    [
      'create',
      'cluster',
      '--name',
      options.name,
      '--config',
      configPath,
      '--kubeconfig',
      options.kubeconfig,
      '--wait',
      '3m',
      '--quiet-pull',
    ],
    { env: kwokEnv(options.workDir), timeoutMs: 5 * 60_000 },
  );
  const context = `kwok-${options.name}`;
  const cluster: KwokCluster = {
    name: options.name,
    kubeconfig: options.kubeconfig,
    context,
    server: '',
  };
  cluster.server = (
    await kubectl(cluster, options.tools, [
      'config',
      'view',
      '--minify',
      '-o',
      'jsonpath={.clusters[0].cluster.server}',
    ])
  ).trim();
  const nodes = Array.from({ length: options.nodes }, (_, index) => `kwok-node-${index}`);
  const manifests = join(options.workDir, 'nodes.json');
  await writeFile(
    manifests,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: nodes.map((n) => JSON.parse(nodeManifest(n))),
    }),
  );
  await kubectl(cluster, options.tools, ['apply', '-f', manifests]);
  await kubectl(cluster, options.tools, [
    'wait',
    '--for=condition=Ready',
    '--timeout=120s',
    ...nodes.map((node) => `node/${node}`),
  ]);
  const config = new KubeConfig();
  config.loadFromFile(options.kubeconfig);
  config.setCurrentContext(context);
  await createSandboxStorageClass(config);
  // The default ServiceAccount is created asynchronously by the controller-manager; pods of the
  // default namespace cannot be created before it exists.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const found = await kubectl(cluster, options.tools, [
      'get',
      'serviceaccount',
      'default',
      '--ignore-not-found',
      '-o',
      'name',
    ]);
    if (found.trim() !== '') break;
    if (Date.now() > deadline) throw new Error('the default ServiceAccount never appeared');
    await new Promise((r) => setTimeout(r, 250));
  }
  return cluster;
}

/** Stops and deletes the cluster and its processes. Safe to call when it is already gone. */
export async function deleteKwokCluster(
  name: string,
  workDir: string,
  kwokctlPath: string,
): Promise<void> {
  if (!existsSync(join(workDir, 'clusters', name))) return;
  await runCommand(kwokctlPath, ['delete', 'cluster', '--name', name], {
    env: kwokEnv(workDir),
    timeoutMs: 120_000,
  });
}
