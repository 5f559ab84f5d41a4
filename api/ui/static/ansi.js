/*
 * Log text with ANSI escape sequences, cut into lines of styled segments, for the build page's
 * init log (app.js). Only SGR colours and weights survive, as class names (`ansi-fg-1`,
 * `ansi-bold`, …: app.css); every other escape sequence and control character is dropped. The
 * output is data, never markup: the page puts each segment's text into a span with
 * `textContent`, so a log line holding `<script>` is shown as those characters.
 *
 * Plain JavaScript with no build step, shared by the browser and the unit tests (ansi.d.ts).
 */

/** The classes of the colours 0–15: normal and bright. */
const BASIC = 16;

/** A style with nothing set. */
export function plainStyle() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

/** The class names of a style, space separated ('' when plain). */
export function styleClasses(style) {
  const classes = [];
  if (style.bold) classes.push('ansi-bold');
  if (style.dim) classes.push('ansi-dim');
  if (style.italic) classes.push('ansi-italic');
  if (style.underline) classes.push('ansi-underline');
  if (style.fg !== null) classes.push(`ansi-fg-${style.fg}`);
  if (style.bg !== null) classes.push(`ansi-bg-${style.bg}`);
  return classes.join(' ');
}

/** The nearest of the 16 basic colours to an RGB colour (components 0–255). */
function nearestBasic(r, g, b) {
  const max = Math.max(r, g, b);
  if (max < 64) return 0;
  const bright = max > 191 ? 8 : 0;
  // Which components are on: 1 red, 2 green, 4 blue, as the colour numbers 30–37 count.
  const on = (value) => value > max / 2;
  const bits = (on(r) ? 1 : 0) | (on(g) ? 2 : 0) | (on(b) ? 4 : 0);
  return bits === 7 && !bright ? 7 : bits + bright;
}

/** The nearest basic colour of a colour of the 256-colour palette. */
function fromPalette(index) {
  if (index < BASIC) return index;
  if (index >= 232) {
    const grey = 8 + (index - 232) * 10;
    return grey < 64 ? 0 : grey < 160 ? 8 : grey < 224 ? 7 : 15;
  }
  const cube = index - 16;
  const level = (n) => (n === 0 ? 0 : 55 + n * 40);
  return nearestBasic(
    level(Math.floor(cube / 36)),
    level(Math.floor(cube / 6) % 6),
    level(cube % 6),
  );
}

/**
 * Reads an extended colour (`38;5;n` or `38;2;r;g;b`) from the parameters at `at` (the 5 or 2);
 * answers the basic colour (or null when malformed) and how many parameters it used.
 */
function extendedColour(params, at) {
  const mode = params[at];
  if (mode === 5) {
    const index = params[at + 1];
    const ok = Number.isInteger(index) && index >= 0 && index <= 255;
    return { colour: ok ? fromPalette(index) : null, used: 2 };
  }
  if (mode === 2) {
    const [r, g, b] = params.slice(at + 1, at + 4);
    const ok = [r, g, b].every((v) => Number.isInteger(v) && v >= 0 && v <= 255);
    return { colour: ok ? nearestBasic(r, g, b) : null, used: 4 };
  }
  return { colour: null, used: 1 };
}

/** Applies one SGR sequence (`ESC [ params m`) to a style, in place. */
function applySgr(style, paramText) {
  const params =
    paramText === '' ? [0] : paramText.split(/[;:]/).map((p) => (p === '' ? 0 : Number(p)));
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (p === 0) Object.assign(style, plainStyle());
    else if (p === 1) style.bold = true;
    else if (p === 2) style.dim = true;
    else if (p === 3) style.italic = true;
    else if (p === 4) style.underline = true;
    else if (p === 22) style.bold = style.dim = false;
    else if (p === 23) style.italic = false;
    else if (p === 24) style.underline = false;
    else if (p >= 30 && p <= 37) style.fg = p - 30;
    else if (p >= 90 && p <= 97) style.fg = p - 90 + 8;
    else if (p === 39) style.fg = null;
    else if (p >= 40 && p <= 47) style.bg = p - 40;
    else if (p >= 100 && p <= 107) style.bg = p - 100 + 8;
    else if (p === 49) style.bg = null;
    else if (p === 38 || p === 48) {
      const { colour, used } = extendedColour(params, i + 1);
      if (colour !== null) style[p === 38 ? 'fg' : 'bg'] = colour;
      i += used;
    }
    // Anything else (blink, reverse, fonts, unknown numbers) shows as plain text.
  }
}

/**
 * The escape sequences understood or skipped: CSI (`ESC [` parameters, final byte), OSC (`ESC ]`
 * … BEL or `ESC \`), two-byte escapes, a lone ESC. Broken ones lose only what is theirs: a CSI
 * without its final byte its parameters, an OSC without its end the rest of its line.
 */
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b(?:\[([0-?]*)[ -/]*([@-~])?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[0-Z\\-~])?/g;

/** Control characters other than tab: never shown. */
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/**
 * One line of log text (no newline) as styled segments, starting from `style` (changed in place
 * to the style at the line's end). A carriage return starts the line over, as on a terminal.
 */
function lineSegments(line, style) {
  const visible = line.endsWith('\r') ? line.slice(0, -1) : line;
  const start = visible.lastIndexOf('\r');
  // The text before the last carriage return is overwritten, but its styles still count.
  if (start >= 0) {
    for (const match of visible.slice(0, start).matchAll(ESCAPES)) {
      if (match[2] === 'm') applySgr(style, match[1]);
    }
  }
  const text = start >= 0 ? visible.slice(start + 1) : visible;
  const segments = [];
  const push = (part) => {
    const clean = part.replace(CONTROLS, '');
    if (clean === '') return;
    const classes = styleClasses(style);
    const last = segments.at(-1);
    if (last && last.classes === classes) last.text += clean;
    else segments.push({ text: clean, classes });
  };
  let at = 0;
  for (const match of text.matchAll(ESCAPES)) {
    push(text.slice(at, match.index));
    if (match[2] === 'm') applySgr(style, match[1]);
    at = match.index + match[0].length;
  }
  push(text.slice(at));
  return segments;
}

/**
 * Log text as lines of styled segments: `[{ text, classes }]` per line. `style` carries the
 * style across calls (a log read in chunks: give each call whole lines and the same style).
 */
export function ansiLines(text, style = plainStyle()) {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map((line) => lineSegments(line, style));
}

/** The text of a line of segments, without its styles. */
export function lineText(segments) {
  return segments.map((segment) => segment.text).join('');
}
