import { describe, expect, it } from 'vitest';
import { cookieValue, createSessions, foreignOrigin } from '../../api/session.js';

describe('admin sessions', () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const sessions = createSessions({
    secret: 'k'.repeat(32),
    ttlMs: 3600_000,
    baseUrl: 'https://runboat.example/ui',
    now: () => now,
  });

  it('accepts the tokens it signed until they expire', () => {
    const token = sessions.issue();
    expect(token).toMatch(/^v1\.[0-9a-z]+\.[\w-]+\.[\w-]+$/);
    expect(sessions.valid(token)).toBe(true);
    expect(sessions.issue()).not.toBe(token);
    now += 3600_000 - 1;
    expect(sessions.valid(token)).toBe(true);
    now += 1;
    expect(sessions.valid(token)).toBe(false);
  });

  it('refuses tokens signed by another key, altered or malformed', () => {
    const token = sessions.issue();
    const other = createSessions({ secret: 'o'.repeat(32), ttlMs: 3600_000, baseUrl: 'http://x' });
    expect(other.valid(token)).toBe(false);
    const [v, expires, nonce, mac] = token.split('.');
    const later = (parseInt(expires ?? '', 36) + 3600_000).toString(36);
    expect(sessions.valid(`${v}.${later}.${nonce}.${mac}`)).toBe(false);
    expect(sessions.valid(`${token}x`)).toBe(false);
    for (const bad of [undefined, '', 'v1', 'v1.a.b', 'v2.a.b.c', `${token}.x`]) {
      expect(sessions.valid(bad), String(bad)).toBe(false);
    }
  });

  it('derives one CSRF token per session', () => {
    const a = sessions.issue();
    const b = sessions.issue();
    expect(sessions.csrfToken(a)).toBe(sessions.csrfToken(a));
    expect(sessions.csrfToken(a)).not.toBe(sessions.csrfToken(b));
  });

  it('sets an HttpOnly, SameSite=Strict cookie, Secure for an https base URL', () => {
    expect(sessions.origin).toBe('https://runboat.example');
    expect(sessions.cookie('t')).toBe(
      'runboat_session=t; Max-Age=3600; Path=/; HttpOnly; SameSite=Strict; Secure',
    );
    expect(sessions.clearCookie()).toBe(
      'runboat_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure',
    );
    const plain = createSessions({ ttlMs: 60_000, baseUrl: 'http://127.0.0.1:8000' });
    expect(plain.cookie('t')).toBe(
      'runboat_session=t; Max-Age=60; Path=/; HttpOnly; SameSite=Strict',
    );
    // Without a secret: a random key of its own (another process does not take its tokens).
    const again = createSessions({ ttlMs: 60_000, baseUrl: 'http://127.0.0.1:8000' });
    expect(again.valid(plain.issue())).toBe(false);
  });

  it('reads its cookie among others', () => {
    expect(cookieValue('a=1; runboat_session=v1.x.y.z; b=2', 'runboat_session')).toBe('v1.x.y.z');
    expect(cookieValue('xrunboat_session=1', 'runboat_session')).toBeUndefined();
    expect(cookieValue(undefined, 'runboat_session')).toBeUndefined();
  });
});

describe('the origin of a state-changing request', () => {
  const allowed = ['https://runboat.example', 'http://127.0.0.1:8000'];

  it('is accepted from this site, or when the request does not say (scripts)', () => {
    expect(foreignOrigin({ origin: 'https://runboat.example' }, allowed)).toBeUndefined();
    expect(foreignOrigin({ origin: 'http://127.0.0.1:8000' }, allowed)).toBeUndefined();
    expect(
      foreignOrigin({ referer: 'https://runboat.example/repos/a/b?x' }, allowed),
    ).toBeUndefined();
    expect(foreignOrigin({}, allowed)).toBeUndefined();
  });

  it('is refused from anywhere else, with the reason', () => {
    expect(foreignOrigin({ origin: 'https://evil.example' }, allowed)).toBe(
      'cross-site request refused: Origin "https://evil.example" is not this site (https://runboat.example or http://127.0.0.1:8000)',
    );
    for (const origin of ['null', 'http://runboat.example', 'https://runboat.example:444']) {
      expect(foreignOrigin({ origin }, allowed), origin).toMatch(/^cross-site request refused/);
    }
    expect(foreignOrigin({ referer: 'https://runboat.example.evil.test/' }, allowed)).toMatch(
      /^cross-site request refused: Referer/,
    );
    // Origin wins over a Referer of this site.
    expect(
      foreignOrigin(
        { origin: 'https://evil.example', referer: 'https://runboat.example/' },
        allowed,
      ),
    ).toMatch(/Origin/);
  });
});
