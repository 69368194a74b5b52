/**
 * The editors' colours. A fixed palette, not free colour strings: the page's CSP
 * (`style-src 'self'`) forbids style attributes, so remote selections and carets are coloured
 * by class (`sy-c0` … `sy-c7`, defined in the editor theme), and only the palette index
 * travels in the awareness state.
 */
export const PALETTE = [
  "#d9480f",
  "#1971c2",
  "#2f9e44",
  "#9c36b5",
  "#e67700",
  "#0c8599",
  "#c2255c",
  "#5f3dc4",
] as const;

/** A stable palette index for a name (the same colour in every tab of that user). */
export function colorIndexFor(name: string): number {
  let hash = 0;
  for (let i = 0; i < name.length; i++) hash = (hash * 31 + name.charCodeAt(i)) | 0;
  return Math.abs(hash) % PALETTE.length;
}

/** A palette index from an untrusted awareness state (another client wrote it). */
export function safeColorIndex(value: unknown): number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value < PALETTE.length
    ? value
    : 0;
}

/** The class of a palette colour, e.g. `sy-c3`. */
export const colorClass = (index: number) => `sy-c${safeColorIndex(index)}`;
