// Headless Debian Chromium as every browser test starts it (driver.mjs,
// demo.mjs): flags that keep it off the network this machine does not
// have. Environment: CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30000,
  });
}
