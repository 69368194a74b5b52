import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The server embeds `dist/` in its binary (crates/server/build.rs), so the file names are
// fixed: the binary's table and the committed bundle stay readable in diffs, and the test
// command can rebuild and compare byte for byte.
// `npm run dev` proxies the sockets and HTTP endpoints to this server (a Switchyard started
// with `cargo run --release`, by default).
const server = process.env.SWITCHYARD_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // No inline scripts or styles: the server's CSP allows only 'self'.
    assetsInlineLimit: 0,
    // One stylesheet for the whole app, lazily loaded pages included (assets/app.css).
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/[name].js",
        // The app's one stylesheet is assets/app.css (the contract's fixed name), whatever
        // the entry is called; other assets keep their names.
        assetFileNames: (asset) =>
          asset.names.some((n) => n.endsWith(".css")) ? "assets/app.css" : "assets/[name][extname]",
      },
    },
  },
  server: {
    proxy: {
      "/socket.io": { target: server, ws: true },
      "/auth": server,
      "/api": server,
    },
  },
});
