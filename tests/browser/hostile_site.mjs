// A hostile peer site opened in a signed-in console must not reach the console or other sites.
// Usage: node hostile_site.mjs <console-url> <password> <hostile-peer-id> <other-peer-id>
// Prints a JSON report on success; exits non-zero with the reason otherwise.
import { chromium } from "playwright-core";

const [consoleUrl, password, hostile, other] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(consoleUrl + "/login");
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL(consoleUrl + "/"), page.click("button[type=submit]")]);
  // The console itself may use its API.
  const own = await page.evaluate(async () => (await fetch("/api/peers")).status);
  if (own !== 200) fail(`the console's own page could not read /api/peers: ${own}`);
  await page.evaluate(() => localStorage.setItem("console-secret", "s3cret"));

  await page.goto(`${consoleUrl}/p/${hostile}/?other=${other}`);
  await page.waitForSelector("#results[data-done=yes]", { timeout: 15000 });
  const report = JSON.parse(await page.textContent("#results"));
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: process.env.SCREENSHOT_DIR + "/hostile.png" });
  for (const [attempt, outcome] of Object.entries(report)) {
    if (attempt === "own data") {
      if (!String(outcome).startsWith("allowed")) fail(`the site could not use its own data: ${outcome}`);
      continue;
    }
    if (!String(outcome).startsWith("blocked")) fail(`${attempt} was not blocked: ${outcome}`);
  }
  console.log(JSON.stringify(report));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
