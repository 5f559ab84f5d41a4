/** Which of the GitHub App's failed webhook deliveries are asked again (docs/operations.md). */
import { describe, expect, it } from 'vitest';
import { deliveryVerdict } from '../../activities/redeliver.js';
import type { HookDelivery } from '../../lib/github.js';

let next = 1;
const attempt = (statusCode: number, secondsAgo: number): HookDelivery => ({
  id: next++,
  guid: 'g',
  deliveredAt: new Date(Date.now() - secondsAgo * 1000),
  redelivery: false,
  statusCode,
  event: 'push',
  action: null,
});

describe('deliveryVerdict', () => {
  it('asks again the newest attempt of a delivery that got no connection or a 5xx', () => {
    const newest = attempt(503, 10);
    expect(deliveryVerdict([attempt(0, 60), newest, attempt(502, 30)])).toEqual({
      verdict: 'redeliver',
      attempt: newest,
    });
  });

  it('leaves a delivery that got a 2xx once, whatever else it got', () => {
    expect(deliveryVerdict([attempt(0, 60), attempt(202, 30), attempt(503, 10)])).toEqual({
      verdict: 'delivered',
    });
  });

  it('never asks again a 4xx', () => {
    expect(deliveryVerdict([attempt(401, 60)])).toEqual({ verdict: 'given-up', reason: 'refused' });
    expect(deliveryVerdict([attempt(0, 60), attempt(400, 10)])).toMatchObject({
      verdict: 'given-up',
    });
  });

  it('gives up after 5 attempts', () => {
    const four = [0, 503, 0, 500].map((status, i) => attempt(status, 50 - i));
    expect(deliveryVerdict(four).verdict).toBe('redeliver');
    expect(deliveryVerdict([...four, attempt(0, 1)])).toEqual({
      verdict: 'given-up',
      reason: 'attempts',
    });
  });
});
