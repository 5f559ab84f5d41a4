import { describe, expect, it } from 'vitest';
import { isAdmin, secretEquals } from '../../api/app.js';

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('the admin credential', () => {
  const admin = { user: 'ops', password: 'p:ss w0rd', token: 'a-long-admin-token-123' };

  it('accepts HTTP Basic and bearer tokens that match', () => {
    expect(isAdmin(basic('ops', 'p:ss w0rd'), admin)).toBe(true);
    expect(isAdmin('Bearer a-long-admin-token-123', admin)).toBe(true);
    expect(isAdmin('bearer a-long-admin-token-123', admin)).toBe(true);
  });

  it('refuses anything else', () => {
    expect(isAdmin(undefined, admin)).toBe(false);
    expect(isAdmin(basic('ops', 'wrong'), admin)).toBe(false);
    expect(isAdmin(basic('other', 'p:ss w0rd'), admin)).toBe(false);
    expect(isAdmin('Basic !!!', admin)).toBe(false);
    expect(isAdmin('Bearer a-long-admin-token-12', admin)).toBe(false);
    expect(isAdmin('Token a-long-admin-token-123', admin)).toBe(false);
    expect(isAdmin('Bearer a-long-admin-token-123', { user: 'ops', password: 'x' })).toBe(false);
    expect(isAdmin(basic('ops', 'x'), { token: 'a-long-admin-token-123' })).toBe(false);
  });

  it('compares secrets of any length', () => {
    expect(secretEquals('a', 'a')).toBe(true);
    expect(secretEquals('a', 'a'.repeat(1000))).toBe(false);
  });
});
