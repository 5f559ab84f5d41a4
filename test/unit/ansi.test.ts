/**
 * The ANSI renderer of the build page's init log (api/ui/static/ansi.js): colours become class
 * names, everything else is text (never markup), and broken or hostile escapes lose only
 * themselves.
 */
import { describe, expect, it } from 'vitest';
import { ansiLines, lineText, plainStyle } from '../../api/ui/static/ansi.js';

const ESC = '\x1b';

describe('ansiLines', () => {
  it('turns SGR colours and weights into classes, and resets', () => {
    const [line] = ansiLines(`${ESC}[1;31mERROR${ESC}[0m odoo ${ESC}[32mINFO${ESC}[39m done`);
    expect(line).toEqual([
      { text: 'ERROR', classes: 'ansi-bold ansi-fg-1' },
      { text: ' odoo ', classes: '' },
      { text: 'INFO', classes: 'ansi-fg-2' },
      { text: ' done', classes: '' },
    ]);
  });

  it('maps bright, background, 256-colour and true colours onto the 16 colours', () => {
    const [line] = ansiLines(
      `${ESC}[93ma${ESC}[0;44mb${ESC}[0;38;5;196mc${ESC}[38;2;0;0;255md${ESC}[48;5;2me`,
    );
    expect(line).toEqual([
      { text: 'a', classes: 'ansi-fg-11' },
      { text: 'b', classes: 'ansi-bg-4' },
      { text: 'c', classes: 'ansi-fg-9' },
      { text: 'd', classes: 'ansi-fg-12' },
      { text: 'e', classes: 'ansi-fg-12 ansi-bg-2' },
    ]);
  });

  it('keeps markup as text: a log line cannot inject HTML', () => {
    const hostile = `<script>alert(1)</script> <img src=x onerror="alert(2)"> &amp;`;
    const [line] = ansiLines(`${ESC}[31m${hostile}`);
    expect(line).toEqual([{ text: hostile, classes: 'ansi-fg-1' }]);
    // Class names come from a fixed set: no parameter can put its own text into one.
    const [forged] = ansiLines(`${ESC}[38;5;"><script>m x ${ESC}[38;2;999;1;1mz`);
    for (const segment of forged ?? []) expect(segment.classes).toMatch(/^[a-z0-9 -]*$/);
    expect(lineText(forged ?? [])).toContain('<script>');
  });

  it('drops broken and unknown escapes, and control characters, but keeps the text', () => {
    const lines = ansiLines(
      [
        `cut off at the end ${ESC}[31`,
        `a lone ${ESC} escape`,
        `cursor ${ESC}[2K${ESC}[1Amoves${ESC}7`,
        `a link ${ESC}]8;;https://evil.example${ESC}\\text${ESC}]8;;${ESC}\\ end`,
        `an unterminated OSC ${ESC}]0;title`,
        `bell\x07 and nul\x00 and tab\tkept`,
        `progress 10%\rprogress 100%\r`,
      ].join('\n'),
    );
    expect(lines.map(lineText)).toEqual([
      'cut off at the end ',
      'a lone  escape',
      'cursor moves',
      'a link text end',
      'an unterminated OSC ',
      'bell and nul and tab\tkept',
      'progress 100%',
    ]);
  });

  it('carries the style across lines and across calls (a log read in chunks)', () => {
    const style = plainStyle();
    const first = ansiLines(`${ESC}[33mwarning\n`, style);
    const second = ansiLines(`still yellow${ESC}[0m\nplain\n`, style);
    expect(first).toEqual([[{ text: 'warning', classes: 'ansi-fg-3' }]]);
    expect(second).toEqual([
      [{ text: 'still yellow', classes: 'ansi-fg-3' }],
      [{ text: 'plain', classes: '' }],
    ]);
  });

  it('answers an empty line as no segments, and no lines for no text', () => {
    expect(ansiLines('')).toEqual([]);
    expect(ansiLines('a\n\nb')).toEqual([
      [{ text: 'a', classes: '' }],
      [],
      [{ text: 'b', classes: '' }],
    ]);
  });
});
