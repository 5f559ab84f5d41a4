/**
 * docker-compose.yml, the single-host install: valid by the Compose Specification's JSON schema
 * (vendored, see test/unit/schemas/README.md), the services an operator expects, and runboat
 * settings that the settings module knows and accepts.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { searchAttributeRegistrations } from '../../domain/search-attributes.js';
import { loadSettings } from '../../lib/settings.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (path: string) => readFileSync(join(projectRoot, path), 'utf8');

interface Service {
  image?: string;
  command?: string[];
  container_name?: string;
  ports?: string[];
  environment?: Record<string, string | number>;
  env_file?: { path: string }[];
  volumes?: { source: string; target: string }[];
  entrypoint?: string[];
}
const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, Service>;
};
const services = compose.services;
const runboatServices = ['api', 'builds-worker', 'init-worker'];

/** `NAME=value` lines of an env file. */
function envFile(path: string): Record<string, string> {
  return Object.fromEntries(
    read(path)
      .split('\n')
      .filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

describe('docker-compose.yml', () => {
  it('is valid by the Compose Specification schema', () => {
    const schema = JSON.parse(read('test/unit/schemas/compose-spec.json')) as Record<
      string,
      unknown
    >;
    // The schema names its draft by an https URL that Ajv's draft-07 meta-schema is not filed under.
    const { $schema: _draft, ...body } = schema;
    const validate = new Ajv({ allErrors: true, strict: false }).compile(body);
    const valid = validate(parseYaml(read('docker-compose.yml'), { merge: true }));
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    // The schema does catch mistakes: an unknown service key is refused.
    expect(validate({ services: { api: { image: 'x', replica: 2 } } })).toBe(false);
  });

  it('runs PostgreSQL, Temporal on it, its UI, the API and the two worker roles apart', () => {
    expect(Object.keys(services).sort()).toEqual(
      [
        'api',
        'builds-worker',
        'init-worker',
        'postgresql',
        'temporal',
        'temporal-setup',
        'temporal-ui',
      ].sort(),
    );
    expect(services.temporal?.environment).toMatchObject({
      DB: 'postgres12',
      POSTGRES_SEEDS: 'postgresql',
    });
    expect(services.api?.command).toEqual(['api']);
    expect(services['builds-worker']?.command).toEqual(['worker', 'builds']);
    expect(services['init-worker']?.command).toEqual(['worker', 'init,image-build']);
    // `--scale init-worker=N` needs no fixed container name and no published port.
    expect(services['init-worker']?.container_name).toBeUndefined();
    expect(services['init-worker']?.ports).toBeUndefined();
    for (const name of runboatServices) {
      const service = services[name];
      expect(service?.env_file?.map((file) => file.path)).toEqual(['deploy/compose.env']);
      expect(service?.volumes?.map((volume) => volume.target).sort()).toEqual([
        '/etc/runboat/kubeconfig',
        '/etc/runboat/repos',
      ]);
    }
  });

  it('registers the search attributes of the builds, as the domain defines them', () => {
    const script = (services['temporal-setup']?.command ?? []).join('\n');
    const pairs = /for pair in ([^;]+);/.exec(script)?.[1]?.trim().split(/\s+/);
    expect(pairs?.sort()).toEqual(searchAttributeRegistrations().sort());
  });

  it('sets only RUNBOAT_* variables the settings know, with values they accept', () => {
    const example = envFile('deploy/compose.env.example');
    for (const name of runboatServices) {
      const environment = {
        ...example,
        ...Object.fromEntries(
          Object.entries(services[name]?.environment ?? {}).map(([key, value]) => [
            key,
            String(value),
          ]),
        ),
        // The mounted directory is deploy/repos of this repository by default.
        RUNBOAT_REPOS_FILE: join(projectRoot, 'deploy', 'repos', 'repos.yaml'),
      };
      const runboatNames = Object.keys(environment).filter((key) => key.startsWith('RUNBOAT_'));
      expect(runboatNames.length).toBeGreaterThan(8);
      // The settings schema keeps the variables it knows and drops the others.
      const settings = loadSettings(environment) as unknown as Record<string, unknown>;
      expect(runboatNames.filter((key) => !(key in settings))).toEqual([]);
      expect(settings.repos).toHaveLength(1);
    }
  });

  it('commits an example of every env file it reads, and ignores the real ones', () => {
    const ignored = read('.gitignore').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['.env', 'deploy/compose.env']));
    const variables = new Set(
      [...read('docker-compose.yml').matchAll(/\$\{([A-Z_]+)[:?}-]/g)].map((match) => match[1]),
    );
    const documented = Object.keys(envFile('.env.example'));
    expect([...variables].filter((name) => !documented.includes(name!))).toEqual([]);
  });
});
