// @ts-check
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Every Node built-in, with and without the `node:` prefix. */
const nodeBuiltins = [...builtinModules, ...builtinModules.map((name) => `node:${name}`)];

/** Import rules (docs/architecture.md, "Module layout and import rules"): who may import what. */
const boundary = (/** @type {string[]} */ groups, /** @type {string} */ message) => ({
  group: groups,
  message,
});

export default tseslint.config(
  { ignores: ['node_modules/', '.sandbox/', 'coverage/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly' },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox.
    files: ['workflows/**/*.ts', 'domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'Workflow and domain code is deterministic: no Node built-ins.',
          })),
          patterns: [
            boundary(
              ['**/lib/**', '**/lib', '**/settings', '**/settings.js'],
              'Workflow and domain code may not import lib/ or settings.',
            ),
            boundary(
              ['**/worker/**', '**/api/**', '**/watcher/**', '**/dev/**'],
              'Workflow and domain code may not import processes or transports.',
            ),
          ],
        },
      ],
    },
  },
  {
    // Activities are imported by workflows as types only.
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/activities/**', '**/activities'],
              allowTypeImports: true,
              message: 'Workflows import activities as types only (import type).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['activities/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            boundary(['**/workflows/**', '**/workflows'], 'Activities never import workflows.'),
          ],
        },
      ],
    },
  },
  {
    files: ['api/**/*.ts', 'watcher/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            boundary(
              ['**/activities/**', '**/activities'],
              'The API and the watcher never change Kubernetes: they signal workflows.',
            ),
          ],
        },
      ],
    },
  },
);
