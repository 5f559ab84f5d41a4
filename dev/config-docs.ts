/**
 * Generates docs/configuration.md from the settings schema of lib/settings.ts: every key of the
 * environment schema and of the repos file schema, with its default and the TSDoc comment above
 * it. The source text is parsed with the TypeScript compiler, so a key added to the schema is in
 * the docs after `npm run docs:config`; a unit test fails while the committed page differs.
 *
 * `npm run docs:config` writes the page; `npm run docs:config -- --check` only compares.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import prettier from 'prettier';
import ts from 'typescript';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The settings module, relative to the project root. */
export const settingsPath = 'lib/settings.ts';
/** The generated page, relative to the project root. */
export const configurationDocPath = 'docs/configuration.md';

/** One key of a schema, as written in the source. */
export interface SchemaKey {
  name: string;
  /** The TSDoc comment above the key, on one line; empty when there is none. */
  description: string;
  /** The argument of `.default(…)` as text (a string literal unquoted); undefined when none. */
  defaultValue: string | undefined;
  optional: boolean;
  /** What the value must be, from the schema's builders. */
  type: string;
  /** The named object schema the value is made of (its keys get a table of their own). */
  objectSchema?: string;
}

/** The TSDoc comment right above a node, without its markers. */
function tsdoc(node: ts.Node, source: ts.SourceFile): string {
  const ranges = ts.getLeadingCommentRanges(source.text, node.getFullStart()) ?? [];
  const last = ranges.at(-1);
  if (!last) return '';
  const text = source.text.slice(last.pos, last.end);
  if (!text.startsWith('/**')) return '';
  return text
    .replace(/^\/\*\*/, '')
    .replace(/\*\/$/, '')
    .split('\n')
    .map((line) => line.replace(/^\s*\*\s?/, '').trim())
    .filter(Boolean)
    .join(' ');
}

/** Every call in a builder chain, outermost first: `a.b().c(1)` → `c(1)`, `b()`. */
function chain(expression: ts.Expression): ts.CallExpression[] {
  const calls: ts.CallExpression[] = [];
  let node: ts.Expression = expression;
  for (;;) {
    if (ts.isCallExpression(node)) {
      calls.push(node);
      node = node.expression;
    } else if (ts.isPropertyAccessExpression(node)) {
      node = node.expression;
    } else {
      return calls;
    }
  }
}

function methodName(call: ts.CallExpression): string | undefined {
  return ts.isPropertyAccessExpression(call.expression) ? call.expression.name.text : undefined;
}

function literalText(node: ts.Node, source: ts.SourceFile): string {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  return node.getText(source);
}

/** What a value must be, read from the builders the key's schema is made of. */
function typeOf(initializer: ts.Expression, source: ts.SourceFile): string {
  const text = initializer.getText(source).replace(/\s+/g, '');
  const calls = chain(initializer);
  const names = calls.map(methodName);
  const enumCall = calls.find((call) => methodName(call) === 'enum');
  const enumValues = (call: ts.CallExpression) => {
    const list = call.arguments[0];
    if (!list || !ts.isArrayLiteralExpression(list)) return undefined;
    return list.elements.map((element) => `\`${literalText(element, source)}\``).join(', ');
  };
  const named = /^(\w+Schema)\b/.exec(text)?.[1];
  if (named) return 'object (below)';
  if (text.startsWith('bool.') || text === 'bool') return '`true` or `false`';
  if (names.includes('pipe') && enumCall) {
    return `comma-separated list of ${enumValues(enumCall) ?? 'values'}`;
  }
  if (enumCall) return `one of ${enumValues(enumCall) ?? 'the listed values'}`;
  if (text.startsWith('positiveInt')) return 'positive integer';
  if (names.includes('url')) return 'URL';
  if (names.includes('number')) {
    const integer = names.includes('int');
    const min = calls.find((call) => methodName(call) === 'min')?.arguments[0]?.getText(source);
    const max = calls.find((call) => methodName(call) === 'max')?.arguments[0]?.getText(source);
    const kind = integer ? 'integer' : 'number';
    if (min !== undefined && max !== undefined) return `${kind} ${min}–${max}`;
    if (names.includes('positive')) return `positive ${kind}`;
    return kind;
  }
  if (names.includes('boolean')) return '`true` or `false`';
  if (names.includes('record')) return 'map';
  if (names.includes('array')) return 'list';
  if (text.startsWith('regex')) return 'regular expression';
  return 'string';
}

/** The keys of the object schema assigned to `variable` (`z.object({…})` and kin). */
export function schemaKeys(sourceText: string, variable: string): SchemaKey[] {
  const source = ts.createSourceFile(settingsPath, sourceText, ts.ScriptTarget.ES2022, true);
  let object: ts.ObjectLiteralExpression | undefined;
  const visit = (node: ts.Node) => {
    if (
      ts.isVariableDeclaration(node) &&
      ts.isIdentifier(node.name) &&
      node.name.text === variable &&
      node.initializer
    ) {
      const call = chain(node.initializer).at(-1);
      const argument = call?.arguments[0];
      if (argument && ts.isObjectLiteralExpression(argument)) object = argument;
    }
    if (!object) ts.forEachChild(node, visit);
  };
  visit(source);
  if (!object) throw new Error(`${settingsPath}: no object schema named ${variable}`);
  return object.properties.map((property) => {
    if (!ts.isPropertyAssignment(property)) {
      throw new Error(`${settingsPath}: ${variable}: only \`key: schema\` entries are read`);
    }
    const name = ts.isIdentifier(property.name)
      ? property.name.text
      : literalText(property.name, source);
    const calls = chain(property.initializer);
    const defaultCall = calls.find((call) =>
      ['default', 'prefault'].includes(methodName(call) ?? ''),
    );
    const defaultArgument = defaultCall?.arguments[0];
    const objectSchema = /^(\w+Schema)\b/.exec(property.initializer.getText(source))?.[1];
    return {
      ...(objectSchema ? { objectSchema } : {}),
      name,
      description: tsdoc(property, source),
      defaultValue: defaultArgument ? literalText(defaultArgument, source) : undefined,
      optional: calls.some((call) => methodName(call) === 'optional'),
      type: typeOf(property.initializer, source),
    };
  });
}

/** Text for a table cell: no line breaks, pipes escaped. */
function cell(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/\|/g, '\\|');
}

function defaultCell(key: SchemaKey): string {
  if (key.defaultValue !== undefined) {
    return key.defaultValue === '' ? '(empty)' : `\`${cell(key.defaultValue)}\``;
  }
  return key.optional ? 'unset' : 'required';
}

function table(keys: SchemaKey[], first: string): string[] {
  return [
    `| ${first} | type | default | meaning |`,
    '| --- | --- | --- | --- |',
    ...keys.map(
      (key) =>
        `| \`${key.name}\` | ${cell(key.type)} | ${defaultCell(key)} | ${cell(key.description || '—')} |`,
    ),
  ];
}

/** A table of keys, then a table for each key made of a named object schema. */
function tables(settingsSource: string, keys: SchemaKey[], heading: string): string[] {
  return [
    ...table(keys, 'key'),
    ...keys.flatMap((key) =>
      key.objectSchema
        ? [
            '',
            `${heading} \`${key.name}\``,
            '',
            ...tables(settingsSource, schemaKeys(settingsSource, key.objectSchema), `${heading}#`),
          ]
        : [],
    ),
  ];
}

/** The page, before formatting. */
export function configurationMarkdown(settingsSource: string): string {
  const env = schemaKeys(settingsSource, 'envSchema');
  const repo = schemaKeys(settingsSource, 'repoConfigSchema');
  const build = schemaKeys(settingsSource, 'buildConfigSchema');
  return [
    '# Configuration reference',
    '',
    '<!-- Generated by `npm run docs:config` from lib/settings.ts: edit the TSDoc comments there, not this page. -->',
    '',
    `Every process (the API and both worker roles) reads its settings from \`RUNBOAT_*\` environment variables and validates them at start with the schema of [\`${settingsPath}\`](../${settingsPath}): a wrong value stops the process with one message naming the variable. This page is generated from that schema, so it lists every variable there is; the TSDoc comment above each key is its meaning here.`,
    '',
    'Booleans accept `true`, `false`, `1`, `0`, `yes` and `no`. `RUNBOAT_ADMIN_USER` and `RUNBOAT_ADMIN_PASSWORD` are set both or neither. Secrets (tokens, passwords, the webhook secret, the values named by `secretEnv`) come only from the environment and are never logged. Which process reads which variable, and how the Compose file and the Kubernetes base set them: [operations.md](operations.md).',
    '',
    '## Environment variables',
    '',
    ...table(env, 'variable'),
    '',
    '## The repos file',
    '',
    '`RUNBOAT_REPOS_FILE` names a YAML file: a list of entries. For a commit of a repo and a target branch, the first entry whose `repo` and `branch` patterns both match the whole name is used (`.` matches line breaks too); a repo or branch no entry matches gets no build. The file is read again when it changed, at each build resolution and each webhook, so a `reset` picks up an edit; an invalid file stops the process at start with the path and field in the message, and a bad edit while the processes run keeps the last good configuration and is logged as an error (once per edit) naming the path and field. An example: [`examples/repos.yaml`](../examples/repos.yaml).',
    '',
    '### An entry',
    '',
    ...tables(settingsSource, repo, '####'),
    '',
    '### A build configuration (`builds[0]`)',
    '',
    'Only the first entry of `builds` is used.',
    '',
    ...tables(settingsSource, build, '####'),
    '',
    'The kubefiles read these values through their template context: [kubefiles.md](kubefiles.md).',
    '',
  ].join('\n');
}

/** The page as committed: generated, then formatted by the project's Prettier settings. */
export async function configurationDoc(
  settingsSource: string = readFileSync(join(projectRoot, settingsPath), 'utf8'),
): Promise<string> {
  const target = join(projectRoot, configurationDocPath);
  const options = (await prettier.resolveConfig(target)) ?? {};
  return prettier.format(configurationMarkdown(settingsSource), {
    ...options,
    filepath: target,
  });
}

async function main(): Promise<void> {
  const target = join(projectRoot, configurationDocPath);
  const generated = await configurationDoc();
  if (process.argv.includes('--check')) {
    let committed = '';
    try {
      committed = readFileSync(target, 'utf8');
    } catch {
      // A missing page differs.
    }
    if (committed !== generated) {
      console.error(`${configurationDocPath} is out of date: run npm run docs:config`);
      process.exitCode = 1;
    }
    return;
  }
  writeFileSync(target, generated);
  console.log(`wrote ${configurationDocPath}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
