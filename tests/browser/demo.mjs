// Opens `make run`'s chat demo (clients/js/demo/) in headless Chromium as a
// newcomer would: at the URL the banner prints, whose `?gw=` names the
// gateway (tests/make_run.rs runs it on a port that is not the page's
// default 8080, so the page must take it from there). Two tabs, uids 11 and
// 12, one room; tab 11 says a line and tab 12 must show it.
//
//   node tests/browser/demo.mjs URL
//
// Prints one JSON line: {"gw": the page's gateway field, "states": each
// tab's state, "seen": the line as tab 12 shows it}; exits 1 with the
// error on stderr if a step misses its deadline.
import { launch } from './launch.mjs';

const url = process.argv[2];
const browser = await launch();
try {
  const context = await browser.newContext();
  const tabs = [];
  for (const uid of ['11', '12']) {
    const page = await context.newPage();
    page.on('pageerror', (e) => process.stderr.write(`[${uid} pageerror] ${e}\n`));
    await page.goto(url, { timeout: 15000 });
    await page.fill('#conn input[name=uid]', uid);
    await page.click('#conn button');
    await page.waitForFunction(() => document.querySelector('#state').textContent === 'live',
      null, { timeout: 15000 });
    tabs.push(page);
  }
  const say = async (page, text) => {
    await page.fill('#say input[name=text]', text);
    await page.click('#say button');
  };
  const shown = (page, text) => page.waitForFunction(
    (t) => [...document.querySelectorAll('#log li')].map((li) => li.textContent).find((l) => l.includes(t)),
    text, { timeout: 15000 });
  const [first, second] = tabs;
  // Its own line back proves tab 12 is in the room (joins travel apart
  // from the other tab's lines, maybe through another core).
  await say(second, 'tab 12 is here');
  await shown(second, 'tab 12 is here');
  const text = 'hello from tab 11';
  await say(first, text);
  const seen = await shown(second, text);
  process.stdout.write(JSON.stringify({
    gw: await first.inputValue('#conn input[name=url]'),
    states: await Promise.all(tabs.map((p) => p.textContent('#state'))),
    seen: await seen.jsonValue(),
  }) + '\n');
} catch (e) {
  process.stderr.write(`demo: ${e.message}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
