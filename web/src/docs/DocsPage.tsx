/** The shared document page (`/docs`, `/docs/<id>`): placeholder until the editor lands. */
export function DocsPage() {
  return <p>Shared documents: coming.</p>;
}
