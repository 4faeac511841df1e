// Drives Debian's Chromium (through playwright-core) for tests/browser.rs
// and tests/js_client.rs.
//
//   node tests/browser/driver.mjs [PAGE]
//
// Serves the files below from two static HTTP servers on 127.0.0.1:0 (two
// ports, so two origins: "app", the one the gateway allows, and "foreign"),
// launches headless Chromium with PAGE (default page.html: raw WebSockets;
// client.html: clients/js/wsgw.js) open on each, waits for the page's
// script to set window.pageReady, and prints one JSON
// line: {"event":"ready","app":ORIGIN,"foreign":ORIGIN, versions...}.
//
// Then it reads commands from stdin, one JSON line each, runs them in the
// page, in order, and prints each result as one JSON line on stdout:
//
//   {"page":"app","call":"wsOpen","args":["a","ws://127.0.0.1:PORT/gateway/ws?token=42"]}
//   -> {"event":"open","protocol":""}
//
// (page.js and client.js list the calls.) The test starts the gateway only
// once it knows the page's origin, and acts between steps (kick, SIGTERM,
// killing ws-api), hence commands rather than a fixed script. Every wait in the page has a
// deadline, so each command is answered. At the end of stdin it closes the
// browser and exits 0. Environment: CHROMIUM (default /usr/bin/chromium).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from './launch.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const html = 'text/html; charset=utf-8';
const js = 'text/javascript; charset=utf-8';
const files = {
  '/page.html': ['page.html', html],
  '/page.js': ['page.js', js],
  '/client.html': ['client.html', html],
  '/client.js': ['client.js', js],
  // The client under test, as an app would serve it.
  '/wsgw.js': ['../../clients/js/wsgw.js', js],
};
const pageFile = process.argv[2] || 'page.html';

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function serve() {
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = files[path];
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const body = await readFile(join(here, file[0]));
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' }).end(body);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

const app = await serve();
const foreign = await serve();
const browser = await launch();
const context = await browser.newContext();
const pages = {};
for (const [name, site] of [['app', app], ['foreign', foreign]]) {
  const page = await context.newPage();
  page.on('console', (m) => process.stderr.write(`[${name} console] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[${name} pageerror] ${e}\n`));
  await page.goto(`${site.origin}/${pageFile}`, { timeout: 15000 });
  await page.waitForFunction(() => window.pageReady === true, null, { timeout: 15000 });
  pages[name] = page;
}
const pkg = JSON.parse(await readFile(join(here, 'node_modules/playwright-core/package.json'), 'utf8'));
out({
  event: 'ready',
  app: app.origin,
  foreign: foreign.origin,
  chromium: browser.version(),
  playwright_core: pkg.version,
  node: process.version,
});

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  try {
    const { page = 'app', call, args = [] } = JSON.parse(line);
    if (!pages[page]) throw new Error(`no page ${page}`);
    const result = await pages[page].evaluate(
      ([call, args]) => {
        const f = window[call];
        if (typeof f !== 'function') return { event: 'driver-error', message: `no call ${call}` };
        return f(...args);
      },
      [call, args],
    );
    out(result);
  } catch (e) {
    out({ event: 'driver-error', message: String(e) });
  }
}
await browser.close();
app.server.close();
foreign.server.close();
process.exit(0);
