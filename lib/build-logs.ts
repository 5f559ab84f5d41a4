/**
 * The logs of builds: the init log kept in the build's ConfigMap, and the live log of its running
 * pod streamed from Kubernetes. Read-only.
 */
import { PassThrough, type Readable } from 'node:stream';
import { Log } from '@kubernetes/client-node';
import { BUILD_LABEL } from '../domain/build.js';
import { describeKubeError, isKubeStatus, type KubeClients } from './kube.js';

/** Reads the logs of the builds of one namespace. */
export function createBuildLogs(kube: KubeClients, namespace: string) {
  return {
    /** The kept init log with its outcome, or undefined when none was kept yet. */
    async initLog(name: string): Promise<string | undefined> {
      try {
        const configMap = await kube.core.readNamespacedConfigMap({
          name: `${name}-init-log`,
          namespace,
        });
        const data = configMap.data ?? {};
        const header = `# ${data.job ?? 'init'}: ${data.outcome ?? '?'}${data.reason ? ` (${data.reason})` : ''}`;
        return `${header}\n${data.log ?? ''}`;
      } catch (error) {
        if (isKubeStatus(error, 404)) return undefined;
        throw error;
      }
    },

    /** Streams the log of the build's newest app pod. */
    async buildLog(name: string, options: { follow: boolean; tail: number }): Promise<Readable> {
      const pods = await kube.core.listNamespacedPod({
        namespace,
        labelSelector: `${BUILD_LABEL}=${name},!runboat/job-kind`,
      });
      const pod = pods.items.filter((item) => item.metadata?.deletionTimestamp === undefined).pop();
      const stream = new PassThrough();
      if (!pod?.metadata?.name) {
        stream.end('(no running pod)\n');
        return stream;
      }
      const container = pod.spec?.containers[0]?.name ?? '';
      await new Log(kube.config)
        .log(namespace, pod.metadata.name, container, stream, {
          follow: options.follow,
          tailLines: options.tail,
        })
        .catch((error: unknown) => {
          stream.end(`(log unavailable: ${describeKubeError(error)})\n`);
        });
      return stream;
    },
  };
}
