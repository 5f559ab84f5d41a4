/** Types of ansi.js (plain JavaScript served to the browser as is). */

/** The SGR state: colours 0–15 (8–15 bright) or null for the default, and the weights. */
export interface AnsiStyle {
  fg: number | null;
  bg: number | null;
  bold: boolean;
  dim: boolean;
  italic: boolean;
  underline: boolean;
}

/** A run of text in one style: `classes` are class names of app.css, space separated. */
export interface AnsiSegment {
  text: string;
  classes: string;
}

/** A style with nothing set. */
export function plainStyle(): AnsiStyle;

/** The class names of a style, space separated ('' when plain). */
export function styleClasses(style: AnsiStyle): string;

/** Log text as lines of styled segments; `style` carries the style across calls. */
export function ansiLines(text: string, style?: AnsiStyle): AnsiSegment[][];

/** The text of a line of segments, without its styles. */
export function lineText(segments: readonly AnsiSegment[]): string;
