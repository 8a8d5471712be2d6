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
const log = [];
async function page(url) {
  const p = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  p.on("pageerror", (e) => errors.push(url + ": " + String(e)));
  p.on("request", (r) => { if (r.url().includes("/lua/")) log.push(url.slice(0, 30) + " " + r.postData()); });
  p.on("dialog", (d) => d.accept());
  await p.goto(url);
  await p.waitForSelector("body[data-ready=yes]", { timeout: 20000 });
  return p;
}
const wait = { timeout: 20000 };

/** Waits for `selector` on `p`; on a timeout, says what the page's status line said. */
async function expect(p, selector) {
  try {
    await p.waitForSelector(selector, wait);
  } catch (error) {
    const said = await p.evaluate(() => (document.getElementById("status") || {}).textContent).catch(() => null);
    const games = await fetch(`${hostConsole}/api/data/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ table: "games" }) }).then((r) => r.text()).catch(() => "");
    throw new Error(`${selector} did not appear on ${p.url()}; the page said: ${said}; games: ${games}; log: ${JSON.stringify(log)}`);
  }
}

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
  report.blog.summaries = await site.evaluate(() => Array.from(document.querySelectorAll("article.post > p")).map((p) => p.textContent));
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


async function quiz() {
  report.quiz = { applied: await apply("quiz") };
  const own = await page(`${hostConsole}/p/${host}/`);
  await own.fill("#add-question input[name=text]", "Capital of the Netherlands?");
  await own.fill("#add-question textarea[name=options]", "*Amsterdam\nRotterdam\nUtrecht");
  await own.click("#add-question button");
  await own.waitForFunction(() => document.querySelectorAll("#question-list > li").length === 4, null, wait);
  const site = await page(`${visitorConsole}/p/${host}/`);
  report.quiz.questions = await site.evaluate(() => document.querySelectorAll("#answer-questions > li").length);
  const q = await site.evaluate(() => Array.from(document.querySelectorAll("#answer-questions > li")).map((li) => li.dataset.id));
  await site.check(`input[name=q${q[0]}][value="1"]`);
  await site.check(`input[name=q${q[1]}][value="0"]`);
  await site.check(`input[name=q${q[1]}][value="2"]`);
  await site.fill(`textarea[name=q${q[2]}]`, "a shared recipe book");
  await site.check(`input[name=q${q[3]}][value="0"]`);
  await site.click("#send-answers");
  await expect(site, "#my-score");
  report.quiz.score = await site.getAttribute("#my-score", "data-score");
  report.quiz.leaderboard = await site.evaluate(() => Array.from(document.querySelectorAll("#leaderboard tr")).map((tr) => tr.dataset.peer));
  await site.screenshot({ path: `${shots}/quiz.png`, fullPage: true });
  report.quiz.second = await site.evaluate(async () => {
    try { await Goop.data.call("quiz", { action: "submit", name: "again", answers: {} }); return "accepted"; } catch (e) { return e.message; }
  });
  report.quiz.direct = await site.evaluate(async () => {
    try { await Goop.data.insert("responses", { name: "around", answers: "{}" }); return "accepted"; } catch (e) { return e.status + " " + e.message; }
  });
  await site.reload();
  await site.waitForSelector("body[data-ready=yes]");
  report.quiz.afterReload = await site.textContent("#status");
  await own.click("nav [data-tab=results]");
  await own.waitForSelector("#leaderboard", wait);
  report.quiz.ownerSees = await own.evaluate(() => document.querySelector("#summary .big").textContent);
  await site.close();
  await own.close();
}

async function linkboard() {
  report.linkboard = { applied: await apply("linkboard") };
  const site = await page(`${visitorConsole}/p/${host}/`);
  await site.fill("#submit input[name=url]", "https://example.org/p2p");
  await site.fill("#submit input[name=title]", "Peer-to-peer, explained");
  await site.fill("#submit input[name=tags]", "p2p, reading");
  await site.click("#submit button");
  await site.waitForSelector(".link", wait);
  await site.click(".link [data-vote=up]");
  await site.waitForSelector(".link[data-score='1']", wait);
  report.linkboard.second = await site.evaluate(async () => {
    const id = Number(document.querySelector(".link").dataset.id);
    try { await Goop.data.insert("votes", { link_id: id, value: "up" }); return "accepted"; } catch (e) { return e.message; }
  });
  const own = await page(`${hostConsole}/p/${host}/`);
  await own.click(".link [data-vote=down]");
  await own.waitForSelector(".link[data-score='0']", wait);
  await own.fill("#submit input[name=url]", "https://example.org/other");
  await own.fill("#submit input[name=title]", "Another link");
  await own.click("#submit button");
  await own.click(".link:has-text('Another link') [data-vote=up]");
  await own.waitForSelector(".link[data-score='1']", wait);
  await site.reload();
  await site.waitForSelector("body[data-ready=yes]");
  report.linkboard.ranked = await site.evaluate(() => Array.from(document.querySelectorAll(".link")).map((l) => [l.querySelector(".title a").textContent, Number(l.dataset.score)]));
  await site.screenshot({ path: `${shots}/linkboard.png` });
  await site.close();
  await own.close();
}

async function wiki() {
  report.wiki = { applied: await apply("wiki") };
  const site = await page(`${visitorConsole}/p/${host}/`);
  report.wiki.home = await site.textContent("h1.page-title");
  await site.click("a.wiki-link.missing");
  await site.waitForSelector("#edit-form", wait);
  await site.fill("#edit-form textarea", "Press **Edit** on any page. Back to [[Home]].");
  await site.fill("#edit-form input[name=summary]", "how to edit");
  await site.click("#edit-form button");
  await site.waitForFunction(() => document.body.dataset.route === "page" && document.querySelector("h1.page-title").textContent === "How to edit", null, wait);
  await site.goto(`${visitorConsole}/p/${host}/#/edit/Home`);
  await site.waitForSelector("#edit-form", wait);
  await site.fill("#edit-form textarea", "Welcome! Read [[How to edit]] first.");
  await site.fill("#edit-form input[name=summary]", "shorter");
  await site.click("#edit-form button");
  await site.waitForFunction(() => document.body.dataset.route === "page", null, wait);
  await site.goto(`${visitorConsole}/p/${host}/#/history/Home`);
  await site.waitForSelector("#history", wait);
  report.wiki.history = await site.evaluate(() => Array.from(document.querySelectorAll("#history tr[data-owner]")).map((tr) => tr.dataset.owner));
  await site.goto(`${visitorConsole}/p/${host}/#/page/Home`);
  await site.waitForFunction(() => document.querySelector(".prose") && document.querySelector(".prose").textContent.includes("Welcome!"), null, wait);
  report.wiki.linkMissing = await site.evaluate(() => document.querySelector("a.wiki-link").classList.contains("missing"));
  await site.screenshot({ path: `${shots}/wiki.png` });
  await site.close();
}

async function kanban() {
  report.kanban = { applied: await apply("kanban") };
  const own = await page(`${hostConsole}/p/${host}/`);
  await own.waitForSelector("#board:not([hidden])", wait);
  const site = await page(`${visitorConsole}/p/${host}/`);
  await site.click("#join-button");
  await site.waitForSelector("#board:not([hidden])", wait);
  report.kanban.role = await site.getAttribute("body", "data-role");
  report.kanban.viewerSees = await site.getAttribute("#board", "data-cards");
  report.kanban.viewerMove = await site.evaluate(async () => {
    const card = document.querySelector(".card");
    try { await Goop.data.update("cards", Number(card.dataset.id), { lane: "done" }); return "accepted"; } catch (e) { return e.status + " " + e.message; }
  });
  const given = await fetch(`${hostConsole}/api/groups/kanban/role`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ peer: visitor, role: "member" }),
  });
  if (given.status >= 300) fail("the role was not given: " + given.status + " " + await given.text());
  await site.reload();
  await site.waitForSelector("#board:not([hidden])", wait);
  report.kanban.roleAfter = await site.getAttribute("body", "data-role");
  if (report.kanban.roleAfter !== "member") fail("the visitor's role after the owner made it a member: " + JSON.stringify(report.kanban));
  const moved = await site.evaluate(() => document.querySelector("[data-lane=todo] .card").dataset.id);
  await site.click(`[data-lane=todo] .card[data-id="${moved}"] [data-move=doing]`);
  await site.waitForSelector(`[data-lane=doing] .card[data-id="${moved}"]`, wait);
  // The owner's open board hears of it in the group and shows it without a reload.
  await own.waitForSelector(`[data-lane=doing] .card[data-id="${moved}"]`, wait);
  report.kanban.ownerNavigations = await own.evaluate(() => performance.getEntriesByType("navigation").length);
  await site.fill("#add-card input[name=title]", "Write the minutes");
  await site.click("#add-card button");
  await own.waitForSelector(".card:has-text('Write the minutes')", wait);
  await site.screenshot({ path: `${shots}/kanban.png` });
  await site.close();
  await own.close();
}

/** Waits until `p`'s board shows `attribute` = `value` (after a live update). */
async function boardShows(p, attribute, value) {
  await p.waitForFunction(([a, v]) => document.getElementById("board").dataset[a] === v, [attribute, value], wait);
}

/** The host opens a game from its lobby and the visitor joins it from theirs: both pages. */
async function startGame() {
  const own = await page(`${hostConsole}/p/${host}/`);
  await own.click("#new-game");
  await own.waitForFunction(() => /^#game\/\d+$/.test(location.hash), null, wait);
  await expect(own, "#game-state[data-status=open]");
  const site = await page(`${visitorConsole}/p/${host}/`);
  await expect(site, "#open-games [data-action=join]");
  await site.click("#open-games [data-action=join]");
  await expect(site, "#game-state[data-status=playing]");
  await expect(own, "#game-state[data-status=playing]");
  return { own, site };
}

async function tictactoe() {
  report.tictactoe = { applied: await apply("tictactoe") };
  const { own, site } = await startGame();
  const plays = [[own, 1], [site, 4], [own, 2], [site, 5], [own, 3]];
  for (const [p, cell] of plays) {
    await p.waitForSelector(`[data-cell="${cell}"]:not([disabled])`, wait);
    await p.click(`[data-cell="${cell}"]`);
  }
  await expect(site, "#game-state[data-status=won]");
  await expect(own, "#game-state[data-status=won]");
  report.tictactoe.board = await site.getAttribute("#board", "data-board");
  report.tictactoe.winner = await site.getAttribute("#game-state", "data-winner");
  report.tictactoe.ownerSays = await own.textContent("#game-state");
  report.tictactoe.taken = await site.evaluate(async () => {
    const id = Number(location.hash.split("/")[1]);
    try { await Goop.data.call("game", { action: "move", game: id, cell: 9 }); return "accepted"; } catch (e) { return e.message; }
  });
  await site.screenshot({ path: `${shots}/tictactoe.png` });
  await site.close();
  await own.close();
}

async function chess() {
  report.chess = { applied: await apply("chess") };
  const { own, site } = await startGame();
  const play = async (p, from, to) => {
    await p.waitForSelector(`[data-square=${from}]`, wait);
    await p.waitForFunction(() => document.getElementById("game-state").textContent.startsWith("Your move"), null, wait);
    await p.click(`[data-square=${from}]`);
    await p.waitForSelector(`[data-square=${to}].target`, wait);
    await p.click(`[data-square=${to}]`);
  };
  await play(own, "f2", "f3");
  await play(site, "e7", "e5");
  await play(own, "g2", "g4");
  // An illegal move sent straight to the host is refused there.
  await site.waitForFunction(() => document.getElementById("game-state").textContent.startsWith("Your move"), null, wait);
  report.chess.illegal = await site.evaluate(async () => {
    const id = Number(location.hash.split("/")[1]);
    try { await Goop.data.call("game", { action: "move", game: id, move: "d8d4" }); return "accepted"; } catch (e) { return e.message; }
  });
  await play(site, "d8", "h4");
  await expect(site, "#game-state[data-status=won]");
  await expect(own, "#game-state[data-status=won]");
  report.chess.result = await own.getAttribute("#game-state", "data-result");
  report.chess.winner = await own.getAttribute("#game-state", "data-winner");
  report.chess.text = await site.textContent("#game-state");
  report.chess.fen = await site.getAttribute("#board", "data-fen");
  report.chess.moves = await site.evaluate(() => Array.from(document.querySelectorAll("#move-list li")).map((li) => li.textContent));
  report.chess.ownerNavigations = await own.evaluate(() => performance.getEntriesByType("navigation").length);
  await site.screenshot({ path: `${shots}/chess.png` });
  await site.close();
  await own.close();
}

const steps = { guestbook, corkboard, blog, quiz, linkboard, wiki, kanban, tictactoe, chess };
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
