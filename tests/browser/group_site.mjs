// A visitor's site page joins its host's group through goop-group.js, and the host and the
// visitor chat from their consoles, live, in headless Chromium; for tests/it/browser.rs.
// Usage: node group_site.mjs <visitor-console-url> <host-peer-id> <host-console-url> <visitor-peer-id>
// Prints a JSON report or exits non-zero with the reason.
import { chromium } from "playwright-core";

const [visitorConsole, host, hostConsole, visitor] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const errors = [];
  const site = await browser.newPage();
  site.on("pageerror", (e) => errors.push(String(e)));
  await site.goto(`${visitorConsole}/p/${host}/`);
  await site.waitForSelector("#joined[data-count]", { timeout: 15000 });
  const joined = await site.evaluate(() => ({
    text: document.getElementById("joined").textContent,
    group: document.getElementById("joined").dataset.group,
    members: Number(document.getElementById("joined").dataset.count),
  }));
  // The host says something in the group; the visitor's page hears it live.
  const sent = await fetch(`${hostConsole}/api/groups/send`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ host: host, group: joined.group, payload: { text: "welcome, visitor" } }),
  });
  if (sent.status !== 204) fail("the host could not send: " + sent.status + " " + await sent.text());
  await site.waitForFunction(() => Array.from(document.querySelectorAll("#log li")).some((li) => li.textContent.includes("welcome, visitor")), null, { timeout: 15000 });
  // The visitor's page says something back.
  await site.fill("#say input[name=text]", "hello from the page");
  await site.click("#say button");
  await site.waitForSelector("body[data-said=yes]", { timeout: 15000 });

  // Two consoles: the host writes on the visitor's page of its console, the visitor's page of
  // the host shows it without a reload.
  const hostPage = await browser.newPage();
  hostPage.on("pageerror", (e) => errors.push(String(e)));
  const visitorPage = await browser.newPage();
  visitorPage.on("pageerror", (e) => errors.push(String(e)));
  await visitorPage.goto(`${visitorConsole}/peer/${host}`);
  await visitorPage.waitForSelector("#chat[data-live=yes]", { timeout: 15000 });
  await hostPage.goto(`${hostConsole}/peer/${visitor}`);
  await hostPage.fill("#chat input[name=text]", "ping from the host console");
  await hostPage.click("#chat form.chat-form button");
  await hostPage.waitForFunction(() => Array.from(document.querySelectorAll("#messages li .status")).some((s) => s.textContent === "delivered"), null, { timeout: 15000 });
  await visitorPage.waitForFunction(() => Array.from(document.querySelectorAll("#messages li")).some((li) => li.textContent.includes("ping from the host console")), null, { timeout: 15000 });
  const reloaded = await visitorPage.evaluate(() => performance.getEntriesByType("navigation").length);

  // The group as a chat room in both consoles: the visitor's page shows what was said before it
  // opened, and what the host says now, live.
  const hostRoom = await browser.newPage();
  hostRoom.on("pageerror", (e) => errors.push(String(e)));
  const visitorRoom = await browser.newPage();
  visitorRoom.on("pageerror", (e) => errors.push(String(e)));
  await visitorRoom.goto(`${visitorConsole}/groups/${host}/${joined.group}`);
  await visitorRoom.waitForSelector("#room[data-live=yes]", { timeout: 15000 });
  const history = await visitorRoom.evaluate(() => Array.from(document.querySelectorAll("#messages li .text")).map((t) => t.textContent));
  await hostRoom.goto(`${hostConsole}/groups/${host}/${joined.group}`);
  await hostRoom.fill("#room input[name=text]", "the room is open");
  await hostRoom.click("#room form.chat-form button");
  await visitorRoom.waitForFunction(() => Array.from(document.querySelectorAll("#messages li")).some((li) => li.textContent.includes("the room is open")), null, { timeout: 15000 });
  await visitorRoom.fill("#room input[name=text]", "glad to be here");
  await visitorRoom.click("#room form.chat-form button");
  await hostRoom.waitForFunction(() => Array.from(document.querySelectorAll("#messages li")).some((li) => li.textContent.includes("glad to be here")), null, { timeout: 15000 });
  const roomNavigations = await visitorRoom.evaluate(() => performance.getEntriesByType("navigation").length);
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(JSON.stringify({ joined: joined, navigations: reloaded, history: history, roomNavigations: roomNavigations }));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
