// Opens the leak-test page in headless Chromium (Debian's /usr/bin/chromium) and prints what the
// page learned, as JSON: node gather.js URL [--screenshot FILE]. Run it inside the namespace
// whose network the browser should use (ip netns exec ...).
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

(async () => {
  const url = process.argv[2];
  const shot = process.argv.indexOf("--screenshot") > 0 ? process.argv[process.argv.indexOf("--screenshot") + 1] : null;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "lgt-chromium-"));
  // Flags that keep Chromium off every network but the page's: no background services, no updates.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 900, height: 620 },
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-features=MediaRouter"],
  });
  try {
    const page = browser.pages()[0] || (await browser.newPage());
    await page.goto(url, { timeout: 15000 });
    await page.waitForSelector("#json[data-done='1']", { state: "attached", timeout: 20000 });
    const result = JSON.parse(await page.textContent("#json"));
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
})().catch(e => { console.error("gather.js: " + e.message); process.exit(2); });
