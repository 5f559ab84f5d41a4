/**
 * Pod logs in the sandbox. kwok's pods run no process, but kwok's kubelet-like server serves a file
 * as a container's log (`kubectl logs`, `--follow` included) for the pods a `ClusterLogs`
 * resource selects. The sandbox enables that resource as a CRD (kwok-cluster.ts), so each
 * namespace can have its own log file: `servePodLogs` selects one namespace's pods, and whoever
 * holds the file appends lines that every pod of the namespace then shows.
 *
 * The file is in the CRI log format (`<RFC 3339 time> stdout F <line>`), which kwok parses as a
 * kubelet does; `appendPodLog` writes it.
 */
import { appendFile, writeFile } from 'node:fs/promises';
import { KubernetesObjectApi, PatchStrategy, type KubeConfig } from '@kubernetes/client-node';

/** The API version of kwok's resources. */
export const KWOK_API_VERSION = 'kwok.x-k8s.io/v1alpha1';

/** The CRDs of kwok the sandbox enables: log files selected per namespace or per pod. */
export const SANDBOX_KWOK_CRDS = ['ClusterLogs', 'Logs'] as const;

/** Name of the ClusterLogs that serves a namespace's pod logs. */
export function podLogsName(namespace: string): string {
  return `pod-logs-${namespace}`;
}

/** Lines in the CRI log format, each stamped now. */
export function criLogLines(lines: readonly string[], stream: 'stdout' | 'stderr' = 'stdout') {
  const now = new Date().toISOString();
  return lines.map((line) => `${now} ${stream} F ${line}\n`).join('');
}

/** Appends lines to a pod log file (a following reader sees them at once). */
export async function appendPodLog(file: string, lines: readonly string[]): Promise<void> {
  await appendFile(file, criLogLines(lines));
}

/** Options of {@link servePodLogs}. */
export interface ServePodLogsOptions {
  namespace: string;
  /** The log file (absolute path; created empty unless `lines` are given). */
  file: string;
  /** Lines the file starts with. */
  lines?: readonly string[];
}

/**
 * Makes every container of every pod of the namespace show the file as its log, through a
 * ClusterLogs resource applied to the sandbox cluster. kwok sees the resource within a moment.
 */
export async function servePodLogs(config: KubeConfig, options: ServePodLogsOptions) {
  await writeFile(options.file, criLogLines(options.lines ?? []));
  const objects = KubernetesObjectApi.makeApiClient(config);
  await objects.patch(
    {
      apiVersion: KWOK_API_VERSION,
      kind: 'ClusterLogs',
      metadata: { name: podLogsName(options.namespace) },
      spec: {
        selector: { matchNamespaces: [options.namespace] },
        logs: [{ logsFile: options.file, follow: true }],
      },
    } as Parameters<typeof objects.patch>[0],
    undefined,
    undefined,
    'runboat-sandbox',
    true,
    PatchStrategy.ServerSideApply,
  );
}
