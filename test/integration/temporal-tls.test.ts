/**
 * Temporal reached over mutual TLS, as in production: the sandbox's Temporal behind a TLS
 * terminator on loopback that presents a certificate of a private CA for the name
 * `temporal.runboat.test` and requires a client certificate of the same CA. A real worker and a
 * real API connect to it through the TLS settings alone (CA file, client certificate and key,
 * server name), and a build goes to `stopped` through that worker.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';

const SERVER_NAME = 'temporal.runboat.test';

let env: BuildEnv;
let dir: string;
let proxy: Server;
let proxyAddress: string;
const handshakes: { authorized: boolean; client: string | undefined }[] = [];
/** Handshakes the terminator refused. */
let refused = 0;
const processes: WorkerProcess[] = [];

/** Runs openssl in `dir`. */
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

/** A private CA, a server certificate for SERVER_NAME and a client certificate, as PEM files. */
async function makeCertificates(): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=runboat test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  const leaf = async (name: string, cn: string, extensions: string) => {
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    await writeFile(join(dir, `${name}.ext`), extensions);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  };
  await leaf(
    'server',
    SERVER_NAME,
    `subjectAltName=DNS:${SERVER_NAME}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
  );
  await leaf(
    'client',
    'runboat-worker',
    'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n',
  );
}

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  dir = await mkdtemp(join(tmpdir(), 'runboat-tls-'));
  await makeCertificates();
  const pem = (name: string) => readFileSync(join(dir, name));
  const [temporalHost, temporalPort] = env.temporal.address.split(':');
  // TLS in front, Temporal's plain gRPC (HTTP/2) behind: what a TLS-enabled frontend looks like.
  proxy = createServer(
    {
      key: pem('server.key'),
      cert: pem('server.pem'),
      ca: pem('ca.pem'),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket: TLSSocket) => {
      const peer = socket.getPeerCertificate();
      const cn = peer.subject?.CN;
      handshakes.push({ authorized: socket.authorized, client: Array.isArray(cn) ? cn[0] : cn });
      const upstream = connect(Number(temporalPort), temporalHost);
      socket.pipe(upstream).pipe(socket);
      const close = () => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', close);
      upstream.on('error', close);
    },
  );
  proxy.on('tlsClientError', () => refused++);
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyAddress = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  await Promise.all(processes.map((process) => process.stop('SIGTERM')));
  await env?.close();
  proxy?.close();
});

/** The TLS settings of a process that reaches Temporal through the terminator. */
const tlsEnv = (client: boolean): NodeJS.ProcessEnv => ({
  RUNBOAT_TEMPORAL_ADDRESS: proxyAddress,
  RUNBOAT_TEMPORAL_TLS_CA_FILE: join(dir, 'ca.pem'),
  RUNBOAT_TEMPORAL_TLS_SERVER_NAME: SERVER_NAME,
  ...(client
    ? {
        RUNBOAT_TEMPORAL_TLS_CERT_FILE: join(dir, 'client.pem'),
        RUNBOAT_TEMPORAL_TLS_KEY_FILE: join(dir, 'client.key'),
      }
    : {}),
});

describe('Temporal over mutual TLS', () => {
  it('runs a worker and the API through the TLS settings, and a build to stopped', async () => {
    const worker = await env.startWorker(tlsEnv(true));
    processes.push(worker);
    const api = await spawnApi(
      {
        ...env.workerEnv,
        ...tlsEnv(true),
        RUNBOAT_API_PORT: '0',
        RUNBOAT_WEBHOOK_INSECURE: 'true',
      },
      join(dir, 'api.log'),
    );
    processes.push(api);

    // The build is asked for over plain TCP; only the TLS-connected worker can run it.
    const handle = await env.build(env.commit('acme/shop', 'main'));
    await env.waitForStatus(handle.workflowId, 'stopped');

    const ready = await fetch(`${api.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ temporal: true });
    const status = (await (await fetch(`${api.url}/api/v1/status`)).json()) as {
      workers: { temporal_reachable: boolean; queues: { role: string; polling: boolean }[] };
    };
    expect(status.workers.temporal_reachable).toBe(true);
    expect(status.workers.queues.map((q) => [q.role, q.polling])).toEqual([
      ['builds', true],
      ['init', true],
    ]);
    // Every connection that got through presented the client certificate.
    expect(handshakes.length).toBeGreaterThanOrEqual(2);
    expect(handshakes.every((h) => h.authorized && h.client === 'runboat-worker')).toBe(true);
    console.log(`TLS handshakes through the terminator: ${handshakes.length}, all authorized`);
  }, 180_000);

  it('does not start without the client certificate the server requires', async () => {
    const before = refused;
    // The worker exits on Temporal's refusal (TLS 1.3 sends the alert `CertificateRequired`
    // after the client's side of the handshake, so it may also surface as a reset or cancelled
    // transport). That the terminator refused the handshake is checked below.
    await expect(env.startWorker(tlsEnv(false))).rejects.toThrow(
      /did not start[\s\S]*(CertificateRequired|transport error|TransportError)/i,
    );
    expect(refused).toBeGreaterThan(before);
  }, 120_000);
});
