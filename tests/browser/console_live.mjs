// Drives a password-protected peer console in headless Chromium for tests/it/browser.rs.
// Usage: node console_live.mjs <console-url> <password>
// Protocol on stdout/stdin: prints READY once signed in with the peer list live; reads a peer ID
// and label; prints SEEN when that row appeared without a reload, FAVOURITE once the star is set,
// SITE when /visit/<id>/ shows the peer's page under a bar naming the peer; then edits index.html in /edit and prints EDITED.
// Any failure exits non-zero with the reason on stderr.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [consoleUrl, password] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
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
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`${r.status()} for ${r.url()}`); });

  await page.goto(consoleUrl + "/");
  if (!page.url().includes("/login")) fail(`an anonymous visit was not sent to the login page: ${page.url()}`);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL(consoleUrl + "/"), page.click("button[type=submit]")]);
  await page.waitForSelector("#live-status[data-state=live]", { timeout: 10000 });
  const loadedAt = await page.evaluate(() => performance.timeOrigin);
  console.log("READY");

  const [id, label] = (await lines.next()).value.split(" ");
  const row = `#peers tr[data-peer-id="${id}"]`;
  await page.waitForSelector(`${row} td.label a:text-is("${label}")`, { timeout: 15000 });
  // The probe result arrives live too.
  await page.waitForSelector(`${row} td.reach.reachable`, { timeout: 15000 });
  if ((await page.evaluate(() => performance.timeOrigin)) !== loadedAt) fail("the page reloaded");
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: process.env.SCREENSHOT_DIR + "/console.png", fullPage: true });
  console.log("SEEN");

  await Promise.all([page.waitForURL(/notice=/), page.click(`${row} button.star`)]);
  await page.waitForSelector(`${row} button.star[aria-pressed=true]`, { timeout: 5000 });
  console.log("FAVOURITE");

  await Promise.all([page.waitForURL(`${consoleUrl}/visit/${id}/`), page.click(`${row} a:text-is("open")`)]);
  const bar = await page.textContent("#visit-bar");
  if (!bar.includes(`Site of ${label}`) || !bar.includes("not verified")) fail(`the bar says: ${bar}`);
  const site = page.frameLocator("#visit-site");
  const body = await site.locator("body").textContent({ timeout: 15000 });
  if (!body.includes(`${label}'s page`)) fail(`the peer's site did not show: ${body}`);
  // The framed site is still in its sandbox: it cannot reach the page around it.
  const frame = page.frames().find((f) => f.url().includes(`/p/${id}/`));
  if (!frame) fail("no frame of the site");
  const reach = await frame.evaluate(() => { try { return parent.document.title; } catch (e) { return "blocked"; } });
  if (reach !== "blocked") fail(`the site read the console page: ${reach}`);
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: process.env.SCREENSHOT_DIR + "/visit.png" });
  console.log("SITE");

  await page.goto(consoleUrl + "/edit");
  await Promise.all([page.waitForURL(/\/edit\/file\?path=index.html/), page.click('a:text-is("index.html")')]);
  await page.fill("textarea[name=content]", "<h1>Edited</h1>\n<p>in a browser</p>\n");
  await Promise.all([page.waitForURL(/notice=[0-9a-f]+\.Saved/), page.click("button:text-is('Save')")]);
  const flash = await page.textContent(".flash");
  if (!flash.includes("Saved.")) fail(`the editor says ${JSON.stringify(flash)} after saving`);
  const saved = await page.inputValue("textarea[name=content]");
  if (saved !== "<h1>Edited</h1>\n<p>in a browser</p>\n") fail(`the editor shows ${JSON.stringify(saved)} after saving`);
  console.log("EDITED");

  if (errors.length) fail("page errors: " + errors.join("; "));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
