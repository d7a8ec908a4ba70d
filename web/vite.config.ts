import { defineConfig } from 'vite';

// The console is served by the gatehouse admin listener under /console/ with a strict CSP
// (script-src 'self'; style-src 'self'): nothing may be inlined into index.html, so assets are
// never inlined and Vite's module-preload polyfill (an inline script) is off.
export default defineConfig({
  base: '/console/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    cssCodeSplit: false,
    sourcemap: false,
    target: 'es2022',
    emptyOutDir: true,
  },
  server: {
    // `npm run dev`: the API, the sign-in pages and the event stream come from a local gatehouse.
    proxy: {
      '/api': 'http://127.0.0.1:9187',
      '/console/login': 'http://127.0.0.1:9187',
      '/console/callback': 'http://127.0.0.1:9187',
      '/console/logout': 'http://127.0.0.1:9187',
    },
  },
});
