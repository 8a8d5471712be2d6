// The console's and the hub's pages on a phone-sized screen, and the theme switch, in headless
// Chromium, for tests/it/browser.rs.
// Usage: node screens.mjs <console-url> <hub-url> <hub-admin-password> <path>...
// Each <path> is a console page ("hub:/…" a hub page). Prints a JSON report: for each page the
// width of its content on a 390×844 screen and any image that did not load; then what the
// theme switch did. With SCREENSHOT_DIR set, saves a screenshot of every page there.
import { chromium } from "playwright-core";

const [consoleUrl, hubUrl, password, ...paths] = process.argv.slice(2);
const shots = process.env.SCREENSHOT_DIR;
const fail = (message) => { console.error(message); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const shotName = (path) => path.replace(/^hub:/, "hub-").replace(/[^A-Za-z0-9-]+/g, "_");

try {
  const context = await browser.newContext(phone);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // The hub's admin page needs its session.
  await page.goto(hubUrl + "/admin");
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL(hubUrl + "/admin"), page.click("button[type=submit]")]);

  const pages = {};
  for (const path of paths) {
    const url = path.startsWith("hub:") ? hubUrl + path.slice(4) : consoleUrl + path;
    const response = await page.goto(url);
    if (!response.ok()) fail(`${url} answered ${response.status()}`);
    await page.waitForLoadState("load");
    pages[path] = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      // What sticks out, to say where a failure comes from.
      wide: Array.from(document.querySelectorAll("body *"))
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
        .slice(0, 5).map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")),
      brokenImages: Array.from(document.images)
        .filter((img) => !img.complete || img.naturalWidth === 0).map((img) => img.src),
    }));
    if (shots) await page.screenshot({ path: `${shots}/phone-${shotName(path)}.png`, fullPage: true });
  }

  // The theme switch: from the configured theme to the other, kept across a reload and on
  // other pages, and back (which forgets the choice).
  await page.goto(consoleUrl + "/");
  const theme = () => page.evaluate(() => document.documentElement.dataset.theme);
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const stored = () => page.evaluate(() => localStorage.getItem("goop.theme"));
  const report = { initial: await theme() };
  report.toggleShown = await page.isVisible("#theme-toggle");
  const before = await background();
  await page.click("#theme-toggle");
  report.afterClick = await theme();
  report.backgroundChanged = before !== (await background());
  report.stored = await stored();
  await page.reload();
  report.afterReload = await theme();
  await page.goto(consoleUrl + "/database");
  report.onAnotherPage = await theme();
  if (shots) await page.screenshot({ path: `${shots}/phone-switched-database.png`, fullPage: true });
  await page.click("#theme-toggle");
  report.afterSecondClick = await theme();
  report.storedAfterSecondClick = await stored();

  // Without JavaScript: the configured theme, and no switch that cannot work.
  const still = await browser.newContext(Object.assign({ javaScriptEnabled: false }, phone));
  const plain = await still.newPage();
  await plain.goto(consoleUrl + "/");
  report.withoutScript = await plain.getAttribute("html", "data-theme");
  report.toggleWithoutScript = await plain.isVisible("#theme-toggle");

  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(JSON.stringify({ pages: pages, theme: report }));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
