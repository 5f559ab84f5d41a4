/**
 * The Temporal connection options built from the settings (TLS, mTLS, API key), as the API and
 * the worker both use them: files read from disk, and a bad configuration named by its variable.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings, SettingsError } from '../../lib/settings.js';
import { temporalConnectionOptions } from '../../lib/temporal.js';

const dir = mkdtempSync(join(tmpdir(), 'runboat-tls-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const ca = file('ca.pem', '-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n');
const cert = file('client.pem', '-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n');
const key = file('client.key', '-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n');
const apiKeyFile = file('api-key', '  secret-api-key\n');

/** The options from these environment variables, through the real settings schema. */
const optionsOf = (env: Record<string, string>) =>
  temporalConnectionOptions(loadSettings({ RUNBOAT_TEMPORAL_ADDRESS: 'temporal:7233', ...env }));

describe('temporalConnectionOptions', () => {
  it('is plain TCP with no TLS setting', () => {
    expect(optionsOf({})).toEqual({ address: 'temporal:7233' });
  });

  it('turns TLS on with the system CAs when asked', () => {
    expect(optionsOf({ RUNBOAT_TEMPORAL_TLS: 'true' })).toEqual({
      address: 'temporal:7233',
      tls: {},
    });
  });

  it('reads the CA, the client certificate and key, and sets the server name', () => {
    const options = optionsOf({
      RUNBOAT_TEMPORAL_TLS_CA_FILE: ca,
      RUNBOAT_TEMPORAL_TLS_CERT_FILE: cert,
      RUNBOAT_TEMPORAL_TLS_KEY_FILE: key,
      RUNBOAT_TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
    });
    expect(options.tls?.serverNameOverride).toBe('temporal.internal');
    expect(options.tls?.serverRootCACertificate?.toString()).toContain('ca');
    expect(options.tls?.clientCertPair?.crt.toString()).toContain('client');
    expect(options.tls?.clientCertPair?.key.toString()).toContain('PRIVATE KEY');
    expect(options.apiKey).toBeUndefined();
  });

  it('takes an API key from the environment or a file (trimmed), with TLS', () => {
    expect(optionsOf({ RUNBOAT_TEMPORAL_API_KEY: 'k-1' })).toEqual({
      address: 'temporal:7233',
      tls: {},
      apiKey: 'k-1',
    });
    expect(optionsOf({ RUNBOAT_TEMPORAL_API_KEY_FILE: apiKeyFile }).apiKey).toBe('secret-api-key');
  });

  it('names the variable of a file that cannot be read', () => {
    const missing = join(dir, 'nope.pem');
    for (const variable of [
      'RUNBOAT_TEMPORAL_TLS_CA_FILE',
      'RUNBOAT_TEMPORAL_API_KEY_FILE',
    ] as const) {
      const attempt = () => optionsOf({ [variable]: missing });
      expect(attempt).toThrow(SettingsError);
      expect(attempt).toThrow(`environment ${variable}=${missing}: ENOENT`);
    }
    const pair = () =>
      optionsOf({ RUNBOAT_TEMPORAL_TLS_CERT_FILE: cert, RUNBOAT_TEMPORAL_TLS_KEY_FILE: missing });
    expect(pair).toThrow(`environment RUNBOAT_TEMPORAL_TLS_KEY_FILE=${missing}`);
  });

  it('refuses half a client certificate, two API keys and an empty key file', () => {
    expect(() => optionsOf({ RUNBOAT_TEMPORAL_TLS_CERT_FILE: cert })).toThrow(
      'RUNBOAT_TEMPORAL_TLS_CERT_FILE and RUNBOAT_TEMPORAL_TLS_KEY_FILE: set both or neither',
    );
    expect(() =>
      optionsOf({ RUNBOAT_TEMPORAL_API_KEY: 'k', RUNBOAT_TEMPORAL_API_KEY_FILE: apiKeyFile }),
    ).toThrow('set one, not both');
    expect(() => optionsOf({ RUNBOAT_TEMPORAL_API_KEY_FILE: file('empty-key', '\n') })).toThrow(
      'RUNBOAT_TEMPORAL_API_KEY_FILE: the file is empty',
    );
  });

  it('never puts a secret into the error message', () => {
    try {
      optionsOf({
        RUNBOAT_TEMPORAL_API_KEY: 'k-secret',
        RUNBOAT_TEMPORAL_API_KEY_FILE: apiKeyFile,
      });
    } catch (error) {
      expect((error as Error).message).not.toContain('k-secret');
      expect((error as Error).message).not.toContain('secret-api-key');
    }
    expect.assertions(2);
  });
});
