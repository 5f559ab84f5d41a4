/**
 * The documentation in the repository stays true to it: the configuration reference is what
 * `npm run docs:config` generates from the settings schema, the README's settings table names
 * only variables the schema has, and every link of the Markdown pages and every docs/ page a
 * source comment cites exists in the repository (docs/README.md).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  configurationDoc,
  configurationDocPath,
  schemaKeys,
  settingsPath,
} from '../../dev/config-docs.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (path: string) => readFileSync(join(projectRoot, path), 'utf8');
const skipped = new Set(['node_modules', '.git', '.sandbox', 'dist', 'coverage']);

/** Files under the project root whose name ends with `suffix`, relative paths. */
function files(suffix: string, dir = projectRoot): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (skipped.has(entry)) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...files(suffix, path));
    else if (entry.endsWith(suffix)) found.push(relative(projectRoot, path));
  }
  return found;
}

/** GitHub's anchor of a heading. */
function anchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const match of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6}\s+(.+)$/gm)) {
    const base = anchor(match[1] ?? '');
    const count = seen.get(base) ?? 0;
    anchors.add(count === 0 ? base : `${base}-${count}`);
    seen.set(base, count + 1);
  }
  return anchors;
}

/** Link targets of a Markdown text (inline links and reference definitions), code left out. */
function linksOf(markdown: string): string[] {
  const text = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '``');
  const inline = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)];
  const references = [...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)];
  return [...inline, ...references].map((match) => match[1] ?? '');
}

describe('docs/configuration.md', () => {
  it('is what npm run docs:config generates from the settings schema', async () => {
    const committed = read(configurationDocPath);
    expect(committed, 'run npm run docs:config').toBe(await configurationDoc());
  });

  it('describes every variable and repos file key (a TSDoc comment above each)', () => {
    const source = read(settingsPath);
    const undescribed = ['envSchema', 'repoConfigSchema', 'buildConfigSchema'].flatMap((schema) =>
      schemaKeys(source, schema)
        .filter((key) => !key.description)
        .map((key) => `${schema}.${key.name}`),
    );
    expect(undescribed).toEqual([]);
  });

  it('lists the variables of the schema, each once, with their defaults', () => {
    const keys = schemaKeys(read(settingsPath), 'envSchema');
    expect(keys.length).toBeGreaterThan(30);
    const page = read(configurationDocPath);
    for (const key of keys) {
      expect(page.match(new RegExp(`^\\| \`${key.name}\` `, 'gm')), key.name).toHaveLength(1);
    }
    const port = keys.find((key) => key.name === 'RUNBOAT_API_PORT');
    expect(port).toMatchObject({ defaultValue: '8000', type: 'integer 0–65535' });
    const roles = keys.find((key) => key.name === 'RUNBOAT_WORKER_ROLES');
    expect(roles?.defaultValue).toBe('builds,init,image-build');
  });

  it("README's settings table names only variables the schema has", () => {
    const readme = read('README.md');
    const start = readme.indexOf('\n### Settings');
    expect(start).toBeGreaterThan(0);
    const end = readme.slice(start + 1).search(/\n#{2,3} /);
    const section = readme.slice(start, end < 0 ? undefined : start + 1 + end);
    const named = new Set(
      [...section.matchAll(/`(RUNBOAT_[A-Z0-9_]+)`/g)].map((match) => match[1] ?? ''),
    );
    expect(named.size).toBeGreaterThan(5);
    const known = new Set(schemaKeys(read(settingsPath), 'envSchema').map((key) => key.name));
    expect([...named].filter((name) => !known.has(name))).toEqual([]);
    expect(section).toContain('](docs/configuration.md)');
  });
});

describe('links of the documentation', () => {
  const pages = files('.md').filter((path) => !path.startsWith(`test${sep}fixtures`));

  it('are found in README.md and docs/', () => {
    expect(pages).toContain('README.md');
    expect(pages).toContain(join('docs', 'README.md'));
    expect(linksOf(read('README.md')).length).toBeGreaterThan(10);
  });

  it('point to files of the repository (and their headings), or to web addresses', () => {
    const broken: string[] = [];
    for (const page of pages) {
      for (const link of linksOf(read(page))) {
        if (/^(https?:|mailto:)/.test(link)) continue;
        const [path = '', fragment] = link.split('#');
        if (/^[a-z]+:/i.test(path) || path.startsWith('/') || path.startsWith('~')) {
          broken.push(`${page}: ${link} (not a path in the repository)`);
          continue;
        }
        const target = path ? resolve(projectRoot, dirname(page), path) : join(projectRoot, page);
        if (!target.startsWith(projectRoot + sep) && target !== projectRoot) {
          broken.push(`${page}: ${link} (outside the repository)`);
        } else if (!existsSync(target)) {
          broken.push(`${page}: ${link} (no such file)`);
        } else if (fragment && target.endsWith('.md')) {
          if (!anchorsOf(readFileSync(target, 'utf8')).has(fragment)) {
            broken.push(`${page}: ${link} (no such heading)`);
          }
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('name no file outside the repository, in the docs or in source comments', () => {
    const sources = [
      ...pages,
      ...files('.ts').filter((path) => !path.endsWith('docs.test.ts')),
      'eslint.config.js',
    ];
    const outside = /DESIGN\.md|STYLE\.md|\.\.\/shared|\/work\/|file:\/\//;
    const offending = sources.filter((path) => outside.test(read(path)));
    expect(offending).toEqual([]);
  });

  it('cited in source comments exist (docs/<page>.md)', () => {
    const cited = new Map<string, string>();
    for (const path of [...files('.ts'), ...files('.js')]) {
      for (const match of read(path).matchAll(/\bdocs\/([a-z0-9-]+\.md)/g)) {
        cited.set(`docs/${match[1] ?? ''}`, path);
      }
    }
    expect(cited.size).toBeGreaterThan(3);
    const missing = [...cited].filter(([doc]) => !existsSync(join(projectRoot, doc)));
    expect(missing).toEqual([]);
  });
});
