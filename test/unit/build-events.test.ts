/**
 * The build events stream (server-sent events) of the real application over real HTTP, fed by an
 * in-memory index: a client that does not read is dropped once the bytes held for it pass the
 * bound, or stay unsent too long; one that reads gets every event.
 */
import { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type EventStreamLimits } from '../../api/app.js';
import type { BuildView } from '../../domain/build-view.js';
import { createLogger } from '../../lib/logger.js';

const emitter = new EventEmitter();
const index = {
  list: () => [],
  all: () => [],
  get: () => undefined,
  find: () => Promise.resolve(undefined),
  on: (event: string, listener: (build: BuildView) => void) => emitter.on(event, listener),
  off: (event: string, listener: (build: BuildView) => void) => emitter.off(event, listener),
  isSynced: true,
};

let server: Server | undefined;
const sockets: Socket[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  server?.close();
  emitter.removeAllListeners();
});

async function start(events: Partial<EventStreamLimits>) {
  const metrics = new Registry();
  const app = createApp({
    index: index as never,
    commands: {} as never,
    logs: {} as never,
    settings: {
      repos: () => [],
      maxStarted: 1,
      maxDeployed: 1,
      admin: {},
      publicStartStop: false,
      events,
    },
    temporalReady: () => Promise.resolve(true),
    logger: createLogger('silent'),
    metrics,
  });
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server?.once('listening', resolve));
  return { port: (server.address() as AddressInfo).port, metrics };
}

/** Opens the stream on a raw socket; resolves once the answer's head arrived. */
async function open(port: number, read: boolean) {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  let received = 0;
  let closed = false;
  let tail = '';
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  const head = new Promise<string>((resolve) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (text.length < 4096) text += chunk.toString('latin1');
      tail = (tail + chunk.toString('latin1')).slice(-64);
      if (text.includes('\r\n\r\n')) {
        if (!read) {
          socket.off('data', onData);
          socket.pause();
        }
        resolve(text);
      }
    };
    socket.on('data', onData);
  });
  socket.write('GET /api/v1/build-events HTTP/1.1\r\nHost: x\r\n\r\n');
  expect(await head).toMatch(/^HTTP\/1\.1 200 OK/);
  return { socket, received: () => received, closed: () => closed, tail: () => tail };
}

const big = (n: number): BuildView =>
  ({ name: `b${n}`, failure_reason: 'x'.repeat(100_000) }) as never;

/** Emits `count` events of 100 kB, one every `everyMs`. */
async function flood(count: number, everyMs: number) {
  for (let n = 0; n < count; n++) {
    emitter.emit('upd', big(n));
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function gauge(metrics: Registry, name: string): Promise<string> {
  return (await metrics.metrics())
    .split('\n')
    .filter((line) => line.startsWith(name))
    .join('\n');
}

describe('the build events stream', () => {
  it('drops a client that does not read once it holds too many bytes', async () => {
    const { port, metrics } = await start({ maxBufferBytes: 1024 * 1024, stallMs: 600_000 });
    const slow = await open(port, false);
    const fast = await open(port, true);
    expect(await gauge(metrics, 'runboat_build_event_streams ')).toBe(
      'runboat_build_event_streams 2',
    );
    // 30 MB in all: more than the socket buffers of both ends hold.
    await flood(300, 2);
    await new Promise((r) => setTimeout(r, 200));
    expect(await gauge(metrics, 'runboat_build_event_streams ')).toBe(
      'runboat_build_event_streams 1',
    );
    expect(await gauge(metrics, 'runboat_build_event_streams_refused_total')).toBe(
      'runboat_build_event_streams_refused_total{reason="slow"} 1',
    );
    // The reader got every byte; the one that does not read was cut after a few MB.
    expect(fast.received()).toBeGreaterThan(300 * 100_000);
    expect(fast.closed()).toBe(false);
    slow.socket.resume();
    await new Promise((r) => setTimeout(r, 200));
    expect(slow.closed()).toBe(true);
    expect(slow.received()).toBeLessThan(30 * 1024 * 1024);
  }, 30_000);

  it('drops a client whose bytes stay unsent too long, and beats while idle', async () => {
    const { port, metrics } = await start({ stallMs: 500, heartbeatMs: 100 });
    const slow = await open(port, false);
    const idle = await open(port, true);
    // Enough to fill the socket buffers, far below the byte bound: only time drops it.
    await flood(100, 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await gauge(metrics, 'runboat_build_event_streams ')).toBe(
      'runboat_build_event_streams 1',
    );
    slow.socket.resume();
    await new Promise((r) => setTimeout(r, 200));
    expect(slow.closed()).toBe(true);
    expect(idle.closed()).toBe(false);
    // Idle since the flood: heartbeats, comment lines a browser ignores.
    expect(idle.tail()).toContain(': heartbeat\n\n');
  }, 30_000);
});
