// The launcher's page in headless Chromium, for tests/it/browser.rs.
// Usage: node launcher.mjs <launcher-url>
// Creates a peer hosting a hub (from a template) and one joined to it with the page's form,
// starts both, opens the second one's console and reads the first one's site there, watches a
// peer's output, deletes a peer (confirming with its name), restores it, and switches the theme.
// Prints a JSON report; any failure exits non-zero.
import { chromium } from "playwright-core";

const [launcherUrl] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };
const expect = (condition, message) => { if (!condition) fail(message); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const report = {};
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const row = (name) => `#peers tr[data-peer="${name}"]`;
  // The notice comes with the action's answer, which the live list may come before.
  const flashSays = (text) => page.waitForFunction(
    (t) => document.getElementById("flash").textContent.includes(t), text, { timeout: 10000 },
  ).then(() => true, () => false);

  await page.goto(launcherUrl);
  await page.waitForSelector("#empty:not([hidden])");

  // A peer hosting a hub, with a template.
  await page.fill("#create input[name=name]", "web");
  await page.fill("#create input[name=label]", "Web <b>site</b>");
  await page.selectOption("#create select[name=template]", "blog");
  await page.check("#create input[name=host_hub]");
  await page.click("#create button[type=submit]");
  await page.waitForSelector(row("web"));
  expect(await flashSays("Created Web <b>site</b>"), "created notice");
  expect((await page.$$(`${row("web")} b`)).length === 0, "the label stays text");
  const ports = await page.textContent(`${row("web")} td:nth-child(3)`);
  const hubPort = /hub (\d+)/.exec(ports)[1];
  report.web_ports = ports;

  // A bad name is refused with the launcher's reason.
  await page.fill("#create input[name=name]", "web");
  await page.click("#create button[type=submit]");
  await page.waitForSelector("#flash.error");
  expect((await page.textContent("#flash")).includes("already a peer"), "duplicate refused");

  // One joined to that hub.
  await page.fill("#create input[name=name]", "reader");
  await page.fill("#create input[name=hub]", `http://127.0.0.1:${hubPort}`);
  await page.click("#create button[type=submit]");
  await page.waitForSelector(row("reader"));

  await page.click("#start-all");
  for (const name of ["web", "reader"]) {
    await page.waitForSelector(`${row(name)} .phase.running`, { timeout: 30000 });
  }
  const webId = await page.getAttribute(`${row("web")} td:first-child div[title]`, "title");
  expect(webId && webId.startsWith("12D3KooW"), `web's peer ID: ${webId}`);

  // The reader's console, opened from the launcher, reads the web peer's site.
  const [consoleTab] = await Promise.all([
    context.waitForEvent("page"),
    page.click(`${row("reader")} a:text-is("Open console")`),
  ]);
  await consoleTab.waitForURL(/^http:/);
  const consoleOrigin = new URL(consoleTab.url()).origin;
  expect(consoleOrigin !== new URL(launcherUrl).origin, "the console is on its own origin");
  let read = false;
  let seen = "";
  for (let i = 0; i < 60 && !read; i++) {
    const response = await consoleTab.goto(`${consoleOrigin}/p/${webId}/`).catch((e) => String(e));
    seen = typeof response === "string" ? response : `${response.status()} ${await consoleTab.content()}`;
    read = typeof response !== "string" && response.ok() && seen.toLowerCase().includes("blog");
    if (!read) await consoleTab.waitForTimeout(500);
  }
  expect(read, `the reader reads the web peer's blog through its console: ${seen.slice(0, 2000)}`);
  await consoleTab.close();

  // The web peer's output, live.
  await page.click(`${row("web")} button[name=logs]`);
  await page.waitForFunction(() => document.getElementById("logs").textContent.includes("is running"));

  // Deleted after typing its name; restored from the trash.
  page.once("dialog", (dialog) => dialog.accept("reader"));
  await page.click(`${row("reader")} button[name=delete]`);
  await page.waitForSelector(row("reader"), { state: "detached" });
  await page.waitForSelector('#trash tr[data-trash^="reader-"]');
  expect(await flashSays("reader is in the trash"), "deleted notice");
  await page.click('#trash tr[data-trash^="reader-"] button[name=restore]');
  await page.waitForSelector(row("reader"));
  await page.waitForSelector("#trash-empty:not([hidden])");

  // A wrong confirmation deletes nothing.
  page.once("dialog", (dialog) => dialog.accept("web"));
  await page.click(`${row("reader")} button[name=delete]`);
  await page.waitForSelector("#flash.error");
  expect((await page.$$(row("reader"))).length === 1, "still there");

  // A hub only: badged, and its button opens its settings, starting it first.
  await page.fill("#create input[name=name]", "hub");
  await page.check("#create input[name=rendezvous_only]");
  await page.click("#create button[type=submit]");
  await page.waitForSelector(row("hub"));
  expect((await page.textContent(`${row("hub")} .badge.rendezvous`)) === "Rendezvous", "badge");
  expect((await page.$$(`${row("hub")} button[name=start]`)).length === 0, "no Start for a hub");
  const [settingsTab] = await Promise.all([
    context.waitForEvent("page"),
    page.click(`${row("hub")} button[name=configure]`),
  ]);
  await settingsTab.waitForURL(/\/self$/, { timeout: 30000 });
  await settingsTab.waitForSelector("h1:text-is('Settings')", { timeout: 30000 });
  await settingsTab.close();
  await page.waitForSelector(`${row("hub")} .phase.running`, { timeout: 30000 });

  // The theme, for the launcher and every console.
  await page.selectOption("#theme", "light");
  await page.waitForFunction(() => document.documentElement.dataset.theme === "light");

  await page.click("#stop-all");
  for (const name of ["web", "reader", "hub"]) {
    await page.waitForSelector(`${row(name)} .phase.stopped`, { timeout: 30000 });
  }
  expect(errors.length === 0, `page errors: ${errors.join("; ")}`);
  report.ok = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
