/**
 * The other editors' carets and selections in CodeMirror, from the awareness `cursor` field
 * (Yjs relative positions, so they stay put while the text around them changes), and this
 * editor's own selection published there.
 *
 * It does what y-codemirror.next's `yRemoteSelections` does, except for how it colours them:
 * that one writes `style="background-color: …"` attributes, which the page's CSP
 * (`style-src 'self'`) blocks. Here the colour is a class of the palette (`sy-c0` … `sy-c7`),
 * styled by the editor theme (`editorTheme`, injected by CodeMirror through constructed
 * stylesheets, which the CSP allows).
 */
import { RangeSet, type Extension, type Range } from "@codemirror/state";
import { Decoration, EditorView, ViewPlugin, WidgetType, type DecorationSet, type ViewUpdate } from "@codemirror/view";
import * as Y from "yjs";
import type { Awareness } from "y-protocols/awareness";
import { PALETTE, colorClass, safeColorIndex } from "./colors";

class CaretWidget extends WidgetType {
  constructor(
    readonly colorIndex: number,
    readonly name: string,
  ) {
    super();
  }

  toDOM() {
    const caret = document.createElement("span");
    caret.className = `sy-caret ${colorClass(this.colorIndex)}`;
    caret.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "sy-caret-name";
    name.textContent = this.name;
    caret.append("\u2060", name, "\u2060");
    return caret;
  }

  eq(other: CaretWidget) {
    return other.colorIndex === this.colorIndex && other.name === this.name;
  }

  ignoreEvent() {
    return true;
  }
}

interface CursorState {
  anchor: unknown;
  head: unknown;
}

function absolute(json: unknown, doc: Y.Doc, text: Y.Text): number | null {
  if (!json || typeof json !== "object") return null;
  try {
    const position = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), doc);
    return position && position.type === text ? position.index : null;
  } catch {
    return null;
  }
}

export function remoteSelections(text: Y.Text, awareness: Awareness): Extension {
  const plugin = ViewPlugin.fromClass(
    class {
      decorations: DecorationSet = RangeSet.of([]);
      private destroyed = false;
      private readonly onChange: (change: { added: number[]; updated: number[]; removed: number[] }) => void;

      constructor(private readonly view: EditorView) {
        this.onChange = ({ added, updated, removed }) => {
          const me = awareness.clientID;
          if ([...added, ...updated, ...removed].some((id) => id !== me)) {
            // Redraw in a transaction of its own (not during another update).
            queueMicrotask(() => {
              if (!this.destroyed) this.view.dispatch({});
            });
          }
        };
        awareness.on("change", this.onChange);
        this.decorations = this.build(view);
      }

      update(update: ViewUpdate) {
        this.publish(update);
        this.decorations = this.build(update.view);
      }

      /** This editor's selection into the awareness state, when it changed (only when focused). */
      private publish(update: ViewUpdate) {
        const local = awareness.getLocalState();
        if (local === null) return;
        const view = update.view;
        const focused = view.hasFocus && view.dom.ownerDocument.hasFocus();
        if (!focused) return;
        const current = (local as { cursor?: CursorState | null }).cursor ?? null;
        const selection = update.state.selection.main;
        const anchor = Y.createRelativePositionFromTypeIndex(text, selection.anchor);
        const head = Y.createRelativePositionFromTypeIndex(text, selection.head);
        const same =
          current !== null &&
          Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.anchor), anchor) &&
          Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.head), head);
        if (!same) awareness.setLocalStateField("cursor", { anchor, head });
      }

      private build(view: EditorView): DecorationSet {
        const doc = text.doc;
        if (!doc) return RangeSet.of([]);
        const length = view.state.doc.length;
        const ranges: Range<Decoration>[] = [];
        awareness.getStates().forEach((state, clientId) => {
          if (clientId === awareness.clientID) return;
          const cursor = (state as { cursor?: CursorState | null }).cursor;
          const user = (state as { user?: { name?: unknown; colorIndex?: unknown } }).user;
          if (!cursor) return;
          const anchor = absolute(cursor.anchor, doc, text);
          const head = absolute(cursor.head, doc, text);
          if (anchor === null || head === null || anchor > length || head > length) return;
          const color = safeColorIndex(user?.colorIndex);
          const name = typeof user?.name === "string" ? user.name.slice(0, 64) : "anonymous";
          const from = Math.min(anchor, head);
          const to = Math.max(anchor, head);
          if (from < to) {
            ranges.push(Decoration.mark({ class: `sy-selection ${colorClass(color)}` }).range(from, to));
          }
          ranges.push(
            Decoration.widget({ widget: new CaretWidget(color, name), side: head - anchor > 0 ? -1 : 1 }).range(head),
          );
        });
        return Decoration.set(ranges, true);
      }

      destroy() {
        this.destroyed = true;
        awareness.off("change", this.onChange);
      }
    },
    { decorations: (v) => v.decorations },
  );
  return [plugin, editorTheme];
}

/** The carets' and selections' look, one rule per palette colour. */
const editorTheme = EditorView.baseTheme({
  ".sy-caret": {
    position: "relative",
    borderLeft: "2px solid",
    marginLeft: "-1px",
    marginRight: "-1px",
    boxSizing: "border-box",
    display: "inline",
  },
  ".sy-caret-name": {
    position: "absolute",
    top: "-1.15em",
    left: "-2px",
    fontSize: "0.75em",
    lineHeight: "1.1",
    padding: "0 3px",
    borderRadius: "3px 3px 3px 0",
    color: "white",
    whiteSpace: "nowrap",
    userSelect: "none",
    pointerEvents: "none",
  },
  ...Object.fromEntries(
    PALETTE.flatMap((color, i) => [
      [`.sy-caret.sy-c${i}`, { borderLeftColor: color }],
      [`.sy-caret.sy-c${i} .sy-caret-name`, { backgroundColor: color }],
      [`.sy-selection.sy-c${i}`, { backgroundColor: `${color}33` }],
    ]),
  ),
});
