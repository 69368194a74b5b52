// The sign-in screen: a name (dev tokens, or names on an old server), or a pasted token when
// the server has a real key and tokens come from the app's own backend.

import { useState, type FormEvent } from "react";
import { signIn, signInWithToken, useAuthConfig } from "../session";

export function SignIn() {
  const config = useAuthConfig();
  const [value, setValue] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  if (config.kind === "loading") return <p className="muted">Loading…</p>;
  if (config.kind === "error") {
    return (
      <p className="error" data-testid="signin-error">
        Cannot reach the server: {config.message}
      </p>
    );
  }

  if (config.kind === "jwt") {
    const submit = (event: FormEvent) => {
      event.preventDefault();
      try {
        signInWithToken(value);
      } catch (err) {
        setError((err as Error).message);
      }
    };
    return (
      <section className="card signin" data-testid="signin">
        <h2>Sign in</h2>
        <p>
          This server gives the page no tokens: in your app, <strong>your own backend</strong> signs a short-lived
          JWT after its own login, and the page gets a fresh one from there for each connection. For trying, paste
          one (e.g. from <code>switchyard mint-token</code>); it cannot be renewed here, so once it expires, sign in
          again.
        </p>
        <form onSubmit={submit} className="stack">
          <label>
            Token
            <textarea value={value} onChange={(e) => setValue(e.target.value)} rows={4} data-testid="signin-token" />
          </label>
          <button type="submit" data-testid="signin-submit">
            Connect
          </button>
        </form>
        {error && (
          <p className="error" data-testid="signin-error">
            {error}
          </p>
        )}
      </section>
    );
  }

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      await signIn(value);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card signin" data-testid="signin">
      <h2>Sign in</h2>
      <p>
        {config.kind === "dev"
          ? `Development mode: pick any name and the server gives this page a token for it (valid ${Math.round(
              config.tokenTtlS / 60,
            )} min; a fresh one is fetched for every connection).`
          : "This server names its users from the handshake (no tokens): pick any name."}
      </p>
      <form onSubmit={submit} className="row">
        <input
          value={value}
          onChange={(e) => setValue(e.target.value)}
          placeholder="your name"
          aria-label="your name"
          maxLength={64}
          autoFocus
          data-testid="signin-name"
        />
        <button type="submit" disabled={busy} data-testid="signin-submit">
          Sign in
        </button>
      </form>
      {error && (
        <p className="error" data-testid="signin-error">
          {error}
        </p>
      )}
    </section>
  );
}
