// Built-in templates used by their owner and by a visitor in headless Chromium, between two real
// peers; for tests/it/browser.rs. The host applies each template from its console's Templates
// page, then the visitor uses it through their own console.
// Usage: node templates.mjs <visitor-console> <host-id> <host-console> <visitor-id> <screenshots-dir> <template…>
// Prints a JSON report or exits non-zero with the reason.
import { chromium } from "playwright-core";

const [visitorConsole, host, hostConsole, visitor, shots, ...wanted] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };
const report = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
async function page(url) {
  const p = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  p.on("pageerror", (e) => errors.push(url + ": " + String(e)));
  p.on("dialog", (d) => d.accept());
  await p.goto(url);
  await p.waitForSelector("body[data-ready=yes]", { timeout: 20000 });
  return p;
}
const wait = { timeout: 20000 };

/** Applies a built-in template through the host console's pages, as its owner would. */
async function apply(name) {
  const owner = await browser.newPage();
  await owner.goto(`${hostConsole}/templates`);
  await owner.click(`[data-key="builtin/${name}"] a.button`);
  await owner.waitForSelector("#plan");
  await owner.click("#apply button");
  await owner.waitForSelector("#notice", wait);
  const notice = await owner.textContent("#notice");
  if (!notice.startsWith("Applied")) fail(`applying ${name}: ${notice}`);
  await owner.close();
  return notice;
}

async function guestbook() {
  report.guestbook = { applied: await apply("guestbook") };
  const site = await page(`${visitorConsole}/p/${host}/`);
  report.guestbook.prefilled = await site.inputValue("#sign input[name=name]");
  report.guestbook.emptyShown = await site.isVisible("#empty-visitor");
  await site.fill("#sign textarea[name=message]", "Lovely peer, greetings from next door!");
  await site.click("#sign button");
  await site.waitForSelector(".entry", wait);
  report.guestbook.entry = await site.evaluate(() => {
    const li = document.querySelector(".entry");
    return { owner: li.dataset.owner, badge: li.querySelector(".badge").textContent, name: li.querySelector("strong").textContent };
  });
  await site.screenshot({ path: `${shots}/guestbook.png` });
  const own = await page(`${hostConsole}/p/${host}/`);
  report.guestbook.ownerCanModerate = await own.isVisible("text=Remove (moderate)");
  await own.close();
  await site.close();
}

async function corkboard() {
  report.corkboard = { applied: await apply("corkboard") };
  const own = await page(`${hostConsole}/p/${host}/`);
  report.corkboard.ownerEmpty = await own.textContent("#board .empty");
  await own.fill("#pin input[name=title]", "Bike for sale");
  await own.selectOption("#pin select[name=category]", "selling");
  await own.fill("#pin textarea[name=body]", "Blue city bike, barely used.");
  await own.fill("#pin input[name=contact]", "chat me");
  await own.click("#pin button[type=submit]");
  await own.waitForSelector(".note.cat-selling", wait);
  const site = await page(`${visitorConsole}/p/${host}/`);
  await site.fill("#pin input[name=title]", "Street party Saturday");
  await site.selectOption("#pin select[name=category]", "event");
  await site.fill("#pin textarea[name=body]", "Bring a chair and a dish to share.");
  await site.click("#pin button[type=submit]");
  await site.waitForSelector(".note.cat-event", wait);
  report.corkboard.notes = await site.evaluate(() => Array.from(document.querySelectorAll(".note")).map((n) => ({
    category: n.className, title: n.querySelector("h2").textContent, removable: !!n.querySelector("button"),
  })));
  await site.click("#filters [data-filter=event]");
  await site.waitForFunction(() => document.querySelectorAll(".note").length === 1, null, wait);
  report.corkboard.filtered = await site.evaluate(() => document.querySelectorAll(".note").length);
  await site.click("#filters [data-filter='']");
  await site.waitForFunction(() => document.querySelectorAll(".note").length === 2, null, wait);
  await site.screenshot({ path: `${shots}/corkboard.png` });
  await site.close();
  await own.close();
}

async function blog() {
  report.blog = { applied: await apply("blog") };
  const own = await page(`${hostConsole}/p/${host}/`);
  report.blog.seeded = await own.evaluate(() => document.querySelectorAll("article.post").length);
  await own.click("#new-post");
  await own.waitForSelector("form.editor");
  await own.fill("form.editor input[name=title]", "Notes from the garden");
  await own.fill("form.editor input[name=tags]", "garden, spring");
  await own.fill("form.editor textarea[name=body]",
    "The **tomatoes** are up.\n\n- basil\n- mint\n\n<script>window.owned = 1</script> <img src=x onerror=\"window.owned=2\">\n\n[a trap](javascript:window.owned=3) and [a real link](https://example.org)");
  await own.click("form.editor button[type=submit]");
  await own.waitForFunction(() => location.hash.startsWith("#/post/"), null, wait);
  // A draft stays the owner's.
  await own.click("#new-post");
  await own.waitForSelector("form.editor");
  await own.fill("form.editor input[name=title]", "Secret plans");
  await own.fill("form.editor textarea[name=body]", "not yet");
  await own.click("form.editor [data-action=draft]");
  await own.waitForFunction(() => location.hash === "#/drafts", null, wait);
  await own.waitForSelector("article.draft", wait);

  const site = await page(`${visitorConsole}/p/${host}/`);
  report.blog.visitorTitles = await site.evaluate(() => Array.from(document.querySelectorAll("article.post h2")).map((h) => h.textContent));
  report.blog.visitorHasOwnerNav = await site.isVisible("#owner-nav");
  await site.click("text=Notes from the garden");
  await site.waitForSelector("#comment-form", wait);
  report.blog.rendered = await site.evaluate(() => {
    const prose = document.querySelector(".prose");
    return {
      strong: prose.querySelector("strong")?.textContent,
      items: Array.from(prose.querySelectorAll("li")).map((li) => li.textContent),
      scripts: prose.querySelectorAll("script, img").length,
      links: Array.from(prose.querySelectorAll("a")).map((a) => a.href),
      owned: window.owned || 0,
      text: prose.textContent.includes("<script>"),
    };
  });
  await site.fill("#comment-form textarea[name=body]", "Save me some basil!");
  await site.click("#comment-form button");
  await site.waitForSelector(".comment", wait);
  report.blog.comment = await site.evaluate(() => ({ owner: document.querySelector(".comment").dataset.owner, text: document.querySelector(".comment p").textContent }));
  await site.screenshot({ path: `${shots}/blog.png`, fullPage: true });
  await site.click("a.tag >> text=garden");
  await site.waitForFunction(() => location.hash === "#/tag/garden", null, wait);
  await site.waitForFunction(() => document.querySelectorAll("article.post").length === 1, null, wait);

  // The owner removes the comment; the visitor no longer sees it.
  await own.goto(`${hostConsole}/p/${host}/`);
  await own.waitForSelector("body[data-ready=yes]");
  await own.click("text=Notes from the garden");
  await own.waitForSelector(".comment", wait);
  await own.click(".comment button");
  await own.waitForFunction(() => !document.querySelector(".comment"), null, wait);
  await site.goto(`${visitorConsole}/p/${host}/`);
  await site.waitForSelector("body[data-ready=yes]");
  await site.click("text=Notes from the garden");
  await site.waitForSelector("#comment-form", wait);
  report.blog.commentsAfterModeration = await site.evaluate(() => document.querySelectorAll(".comment").length);
  await site.close();
  await own.close();
}

const steps = { guestbook, corkboard, blog };
try {
  for (const name of wanted) {
    if (!steps[name]) fail("no step " + name);
    await steps[name]();
  }
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(JSON.stringify(report));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
