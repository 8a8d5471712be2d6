// Drives the hub's pages in headless Chromium for tests/it/browser.rs.
// Usage: node hub_dashboard.mjs <hub-url> <admin-password>
// Protocol on stdout/stdin: prints READY once the dashboard is live; reads the label the test
// published; prints SEEN when the row appeared without a reload; then checks the admin login and
// prints ADMIN OK. Any failure exits non-zero with the reason on stderr.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [hubUrl, password] = process.argv.slice(2);
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

  await page.goto(hubUrl + "/");
  await page.waitForSelector("#live-status[data-state=live]", { timeout: 10000 });
  const loadedAt = await page.evaluate(() => performance.timeOrigin);
  console.log("READY");

  const label = (await lines.next()).value;
  await page.waitForFunction(
    (wanted) => Array.from(document.querySelectorAll("#peers tbody td.label")).some((td) => td.textContent === wanted),
    label, { timeout: 10000 });
  const heading = (await page.textContent("h1")).replace(/\s+/g, " ");
  if (!heading.startsWith("1 peer online")) fail(`the heading reads ${heading}`);
  const recent = await page.textContent("#recent");
  if (!recent.includes("joined")) fail(`recent changes do not show the join: ${recent}`);
  if ((await page.evaluate(() => performance.timeOrigin)) !== loadedAt) fail("the page reloaded");
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: process.env.SCREENSHOT_DIR + "/dashboard.png", fullPage: true });
  console.log("SEEN");

  await page.goto(hubUrl + "/admin");
  await page.fill("input[name=password]", "not the password");
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
  if (!(await page.textContent("body")).includes("Wrong password.")) fail("a wrong password was not refused");
  // The refusal is a 401, which Chromium logs; that one is expected.
  errors.splice(0, errors.length, ...errors.filter((e) => !e.includes("status of 401")));

  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL(hubUrl + "/admin"), page.click("button[type=submit]")]);
  await page.waitForSelector("#admin-peers");
  const admin = await page.textContent("body");
  if (!admin.includes(label)) fail("the admin page does not list the peer");
  if (!admin.includes("browser@example.org")) fail("the admin page does not show the email");
  const cookies = await page.evaluate(() => document.cookie);
  if (cookies.includes("goop_admin")) fail("the session cookie is readable from JavaScript");
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: process.env.SCREENSHOT_DIR + "/admin.png", fullPage: true });

  await Promise.all([page.waitForLoadState("load"), page.click("nav.admin button[type=submit]")]);
  if (!(await page.$("input[name=password]"))) fail("signing out did not return to the login form");
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log("ADMIN OK");
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
