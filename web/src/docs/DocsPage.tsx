/**
 * The shared document page (`/docs`, `/docs/<id>`): a CodeMirror 6 editor bound to a Yjs
 * text (y-codemirror.next), synced over the `/docs` namespace by `DocSession`, with who is
 * editing, their carets and selections, and their mouse pointers over the editor.
 * The events are listed in ./README.md.
 */
import { useEffect, useRef, useState, useSyncExternalStore, type FormEvent, type PointerEvent } from "react";
import { EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { basicSetup } from "codemirror";
import * as Y from "yjs";
import { yCollab, yUndoManagerKeymap } from "y-codemirror.next";
import { docsSocket } from "../socket";
import { useSession } from "../session";
import { navigate, usePathname } from "../components/router";
import { colorClass, colorIndexFor } from "./colors";
import { DocSession, type DocSnapshot, type Peer } from "./docSync";
import { remoteSelections } from "./remoteSelections";
import "./docs.css";

/** The documents offered in the picker; any id of 1–64 `A-Z a-z 0-9 _ -` can be opened. */
export const SUGGESTED_DOCS = ["welcome", "notes", "scratch"] as const;
const DOC_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The document id of a `/docs/<id>` path (null for `/docs` or a bad id). */
export function docIdFromPath(pathname: string): string | null {
  const match = /^\/docs\/([^/]+)\/?$/.exec(pathname);
  if (!match) return null;
  let id: string;
  try {
    id = decodeURIComponent(match[1]);
  } catch {
    return null;
  }
  return DOC_ID.test(id) ? id : null;
}

/** Goes to `/docs/<id>` with the app's router (History API). */
function openDoc(id: string) {
  navigate(`/docs/${encodeURIComponent(id)}`);
}

export function DocsPage({ docId: fromProps }: { docId?: string } = {}) {
  const session = useSession();
  const fromPath = docIdFromPath(usePathname());
  const docId = fromProps ?? fromPath ?? SUGGESTED_DOCS[0];

  if (!session) return <p>Sign in to edit documents.</p>;
  return (
    <section className="sy-docs" aria-labelledby="sy-docs-title">
      <h2 id="sy-docs-title">
        Shared document <code data-testid="docs-id">{docId}</code>
      </h2>
      <DocPicker current={docId} />
      {/* A new editor, Y.Doc and session per document and per user. */}
      <DocEditor key={`${docId}\u0000${session.name}`} docId={docId} name={session.name} />
      <p className="sy-docs-hint">
        Open this page in a second window (or another browser, signed in as someone else) and type in both.
      </p>
    </section>
  );
}

function DocPicker({ current }: { current: string }) {
  const [field, setField] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const id = field.trim();
    if (!DOC_ID.test(id)) {
      setProblem("A document id is 1 to 64 letters, digits, _ or -.");
      return;
    }
    setProblem(null);
    setField("");
    openDoc(id);
  };
  return (
    <nav className="sy-docs-picker" aria-label="Documents">
      <ul>
        {SUGGESTED_DOCS.map((id) => (
          <li key={id}>
            <a
              href={`/docs/${id}`}
              aria-current={id === current ? "page" : undefined}
              data-testid={`docs-link-${id}`}
              onClick={(event) => {
                if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
                event.preventDefault();
                openDoc(id);
              }}
            >
              {id}
            </a>
          </li>
        ))}
      </ul>
      <form onSubmit={submit}>
        <label>
          Open a document{" "}
          <input
            value={field}
            onChange={(e) => setField(e.target.value)}
            placeholder="document id"
            maxLength={64}
            data-testid="docs-id-input"
          />
        </label>{" "}
        <button type="submit" data-testid="docs-open">
          Open
        </button>
        {problem && (
          <span className="sy-docs-problem" role="alert">
            {" "}
            {problem}
          </span>
        )}
      </form>
    </nav>
  );
}

/** The editor's own look (inside its shadow root, where the page's CSS does not reach). */
const editorLook = EditorView.theme({
  "&": { minHeight: "18rem", backgroundColor: "white" },
  "&.cm-focused": { outline: "2px solid #74c0fc" },
  ".cm-content, .cm-gutter": { minHeight: "18rem" },
  // Room above the first line for the other editors' name labels (drawn above their carets).
  ".cm-content": { paddingTop: "1.1em" },
  ".cm-scroller": { fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" },
});

const CONNECTING: DocSnapshot = { status: "connecting", error: null, peers: [] };
const noSubscription = () => () => {};
const STATUS_TEXT: Record<DocSnapshot["status"], string> = {
  connecting: "connecting…",
  syncing: "syncing…",
  synced: "saved",
  offline: "offline: edits are kept here and sent on reconnection",
};

function DocEditor({ docId, name }: { docId: string; name: string }) {
  const hostRef = useRef<HTMLDivElement>(null);
  const [session, setSession] = useState<DocSession | null>(null);

  useEffect(() => {
    const host = hostRef.current;
    if (!host) return;
    // The socket is shared by the app (one Engine.IO connection); connecting twice is harmless.
    if (!docsSocket.active) docsSocket.connect();
    const doc = new DocSession(docsSocket, docId, { name, colorIndex: colorIndexFor(name) });
    const undoManager = new Y.UndoManager(doc.text);
    // The editor lives in a shadow root: there CodeMirror's styles (style-mod) go into a
    // constructed stylesheet (adoptedStyleSheets, CSSOM), which the CSP allows; in the document
    // itself style-mod writes a <style> element, which `style-src 'self'` blocks.
    // (StrictMode runs this effect twice on the same element: the shadow root is reused.)
    const root = host.shadowRoot ?? host.attachShadow({ mode: "open" });
    const view = new EditorView({
      parent: root,
      root,
      state: EditorState.create({
        doc: doc.text.toString(),
        extensions: [
          basicSetup,
          // Undo and redo of this user's own edits only (Y.UndoManager), not the others'.
          Prec.high(keymap.of(yUndoManagerKeymap)),
          EditorView.lineWrapping,
          editorLook,
          EditorView.contentAttributes.of({ "aria-label": `Document ${docId}` }),
          yCollab(doc.text, null, { undoManager }),
          remoteSelections(doc.text, doc.awareness),
        ],
      }),
    });
    setSession(doc);
    return () => {
      setSession(null);
      view.destroy();
      undoManager.destroy();
      doc.destroy();
    };
  }, [docId, name]);

  const snapshot = useSyncExternalStore(
    session?.subscribe ?? noSubscription,
    session?.getSnapshot ?? (() => CONNECTING),
  );

  const surfaceRef = useRef<HTMLDivElement>(null);
  const onPointerMove = (event: PointerEvent<HTMLDivElement>) => {
    const surface = surfaceRef.current;
    if (!surface || !session) return;
    const box = surface.getBoundingClientRect();
    session.setPointer({ x: event.clientX - box.left, y: event.clientY - box.top });
  };
  const onPointerLeave = () => session?.setPointer(null);

  const others = snapshot.peers.filter((peer) => !peer.local);
  return (
    <div className="sy-docs-body">
      <div className="sy-docs-bar">
        <span data-testid="docs-status" data-status={snapshot.status} className={`sy-docs-status is-${snapshot.status}`}>
          {STATUS_TEXT[snapshot.status]}
        </span>
        <Editors peers={snapshot.peers} />
      </div>
      {snapshot.error && (
        <p className="sy-docs-error" role="alert" data-testid="docs-error">
          {snapshot.error}
        </p>
      )}
      <div
        className="sy-docs-surface"
        ref={surfaceRef}
        onPointerMove={onPointerMove}
        onPointerLeave={onPointerLeave}
        data-testid="docs-editor"
      >
        <div ref={hostRef} className="sy-docs-editor" />
        <div className="sy-pointers" aria-hidden="true">
          {others.map((peer) => (peer.pointer ? <RemotePointer key={peer.clientId} peer={peer} /> : null))}
        </div>
      </div>
    </div>
  );
}

function Editors({ peers }: { peers: readonly Peer[] }) {
  return (
    <ul className="sy-docs-users" aria-label="Editing now" data-testid="docs-users">
      {peers.map((peer) => (
        <li key={peer.clientId} className={`sy-docs-user ${colorClass(peer.colorIndex)}`} data-testid="docs-user">
          <span className="sy-dot" aria-hidden="true" />
          {peer.name}
          {peer.local ? " (you)" : ""}
        </li>
      ))}
    </ul>
  );
}

/** Another editor's mouse pointer: placed through React's style prop (CSSOM, which the CSP allows). */
function RemotePointer({ peer }: { peer: Peer }) {
  const { x, y } = peer.pointer!;
  return (
    <div
      className={`sy-pointer ${colorClass(peer.colorIndex)}`}
      style={{ transform: `translate(${x}px, ${y}px)` }}
      data-testid="docs-pointer"
      data-name={peer.name}
    >
      <svg width="14" height="20" viewBox="0 0 14 20" aria-hidden="true">
        <path d="M0 0 L0 16 L4.5 12 L7.5 19 L10 18 L7 11 L13 11 Z" />
      </svg>
      <span className="sy-pointer-name">{peer.name}</span>
    </div>
  );
}
