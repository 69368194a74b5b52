import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import "./app.css";

// StrictMode mounts every component twice in development (and checks effects clean up): the
// app must still end with one connection and one listener per event (see socket.ts).
const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
