/** The call page (`/call`): placeholder until the call UI lands. */
export function CallPage() {
  return <p>Calls: coming.</p>;
}
