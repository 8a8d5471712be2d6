// A visitor signs a peer's guestbook in headless Chromium, for tests/it/browser.rs.
// Usage: node guestbook.mjs <visitor-console-url> <host-peer-id>
// Prints a JSON report ({visitor, host, hello, status, entries}) or exits non-zero with the reason.
import { chromium } from "playwright-core";

const [consoleUrl, host] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${consoleUrl}/p/${host}/`);
  await page.waitForSelector("body[data-ready=yes]", { timeout: 15000 });
  await page.fill("input[name=message]", "Signed in a browser");
  await page.click("button[type=submit]");
  await page.waitForSelector("#status[data-done=yes]", { timeout: 15000 });
  const report = await page.evaluate(() => ({
    visitor: document.body.dataset.visitor,
    host: document.body.dataset.host,
    hello: document.body.dataset.hello,
    status: document.getElementById("status").textContent,
    entries: Array.from(document.querySelectorAll("#entries li")).map((li) => li.textContent),
  }));
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(JSON.stringify(report));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
