/**
 * The API clients of lib/kube.ts keep their connections to the API server open: requests one
 * after the other, from any of the clients, reuse one connection instead of each opening its own
 * (a TCP connection and a TLS handshake each). When the TLS settings change, the next request
 * gets a new connection and the old one is closed.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createKubeClients } from '../../lib/kube.js';
import { createTestNamespace, eventually } from './helpers.js';

const { kube: sandbox } = inject('sandbox');
const kube = createKubeClients({ kubeconfig: sandbox.kubeconfig, context: sandbox.context });
const apiServer = new URL(kube.config.getCurrentCluster()!.server);
let namespace: string;

/**
 * The connections this process opens to the API server: its requests sent on a new socket (the
 * test's only HTTP client requests).
 */
const opened: Socket[] = [];
const onRequest = (message: unknown) => {
  const { request } = message as { request: ClientRequest };
  if (request.host !== apiServer.hostname) return;
  // Published once the request is sent: its socket may be assigned already.
  const count = (socket: Socket) => {
    if (!request.reusedSocket) opened.push(socket);
  };
  if (request.socket) count(request.socket);
  else request.once('socket', count);
};

beforeAll(async () => {
  subscribe('http.client.request.start', onRequest);
  namespace = await createTestNamespace(kube.core, 'conns');
});

afterAll(() => {
  unsubscribe('http.client.request.start', onRequest);
});

/** Connections opened to the API server while `work` runs. */
async function connectionsOpenedBy(work: () => Promise<unknown>): Promise<Socket[]> {
  const before = opened.length;
  await work();
  return opened.slice(before);
}

describe('connections to the API server', () => {
  it('requests one after the other, from every client, share one connection', async () => {
    // The first request may open the connection the others reuse.
    await kube.core.readNamespace({ name: namespace });
    const sockets = await connectionsOpenedBy(async () => {
      for (let index = 0; index < 10; index++) {
        const name = `conns-${index}`;
        await kube.core.createNamespacedConfigMap({
          namespace,
          body: { metadata: { name }, data: { index: String(index) } },
        });
        await kube.objects.read({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name, namespace },
        });
        await kube.apps.listNamespacedDeployment({ namespace });
        await kube.batch.listNamespacedJob({ namespace });
      }
    });
    // 40 requests and a discovery: without keep-alive, 41 connections.
    expect(sockets).toHaveLength(0);
  });

  it('requests at once open what they need, then reuse it', async () => {
    const burst = () =>
      Promise.all(
        Array.from({ length: 8 }, (_, index) =>
          kube.core.readNamespacedConfigMap({ name: `conns-${index}`, namespace }),
        ),
      );
    const first = await connectionsOpenedBy(burst);
    expect(first.length).toBeLessThanOrEqual(8);
    const again = await connectionsOpenedBy(burst);
    expect(again).toHaveLength(0);
  });

  it('a change of TLS settings opens a new connection and closes the old ones', async () => {
    await kube.core.readNamespace({ name: namespace });
    const open = opened.filter((socket) => !socket.destroyed);
    expect(open.length).toBeGreaterThan(0);
    // Skipping the server's certificate check is another TLS identity: its agent is another.
    const cluster = kube.config.getCurrentCluster()!;
    (cluster as { skipTLSVerify: boolean }).skipTLSVerify = true;
    try {
      const sockets = await connectionsOpenedBy(() => kube.core.readNamespace({ name: namespace }));
      expect(sockets).toHaveLength(1);
      await eventually(async () => {
        expect(open.filter((socket) => !socket.destroyed)).toHaveLength(0);
      }, 5_000);
    } finally {
      (cluster as { skipTLSVerify: boolean }).skipTLSVerify = false;
    }
  });
});
