// Opens a site page written for the original SDK in headless Chromium, for tests/it/browser.rs.
// Usage: node original_sdk.mjs <page-url>...
// Opens each page in turn and prints a JSON array of their reports (#report once it is done),
// or exits non-zero with the reason.
import { chromium } from "playwright-core";

const urls = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const reports = [];
  for (const url of urls) {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForSelector("#report[data-done=yes]", { timeout: 30000 });
    if (errors.length) fail(`page errors at ${url}: ` + errors.join("; "));
    reports.push(JSON.parse(await page.textContent("#report")));
    await page.close();
  }
  console.log(JSON.stringify(reports));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
