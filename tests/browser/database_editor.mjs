// The console's database editor in headless Chromium, for tests/it/browser.rs.
// Usage: node database_editor.mjs <console-url>
// Creates a table, inserts (once with a bad value), edits, deletes, imports a CSV with one bad
// row, runs read-only SQL, and prints a JSON report; any failure exits non-zero.
import { chromium } from "playwright-core";

const [consoleUrl] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };
const expect = (condition, message) => { if (!condition) fail(message); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const report = {};
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // A click that loads another page: wait for that page, not for the one already loaded.
  const navigate = async (selector) => Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click(selector)]);
  const submit = async (form) => navigate(`${form} button[type=submit]`);
  const cells = async () => page.$$eval("#rows tbody tr", (rows) => rows.map((r) => Array.from(r.cells).map((c) => c.textContent.trim())));

  await page.goto(consoleUrl + "/database");
  await page.fill("#create-table input[name=name]", "books");
  await page.fill("#create-table textarea[name=columns]", "title TEXT NOT NULL\npages INTEGER");
  await page.selectOption("#create-table select[name=insert]", "local");
  await submit("#create-table");
  expect(page.url().endsWith("/database/t/books"), `created table page: ${page.url()}`);

  await page.fill("#insert input[name='col:title']", "Dune");
  await page.fill("#insert input[name='col:pages']", "many");
  await submit("#insert");
  const refused = await page.textContent("#table-error");
  expect(refused.includes("`pages` must be an integer"), `bad value message: ${refused}`);
  expect((await page.inputValue("#insert input[name='col:title']")) === "Dune", "the form kept its values");
  report.refused = refused;

  await page.fill("#insert input[name='col:pages']", "412");
  await submit("#insert");
  expect((await page.textContent(".flash")).includes("added"), "insert notice");
  let rows = await cells();
  expect(rows.length === 1 && rows[0].includes("Dune") && rows[0].includes("412"), `after insert: ${JSON.stringify(rows)}`);

  await navigate("#rows tbody tr a:text-is('edit')");
  await page.fill("#edit input[name='col:pages']", "500");
  await submit("#edit");
  rows = await cells();
  expect(rows[0].includes("500"), `after edit: ${JSON.stringify(rows)}`);

  await navigate("#rows tbody tr button:text-is('delete')");
  expect((await cells()).length === 0, "after delete");

  await page.fill("#import textarea[name=csv]", "title,pages\nAlpha,1\n,2\nGamma,three\nDelta,4\n");
  await submit("#import");
  const preview = await page.textContent("#import-report");
  expect(preview.includes("Preview: 2 rows can be imported, 2 with problems"), `preview: ${preview}`);
  const problems = await page.$$eval("#import-report li", (items) => items.map((li) => li.textContent.trim()));
  expect(problems[0].startsWith("line 3:") && problems[0].includes("`title` is required"), `problem 1: ${problems}`);
  expect(problems[1].startsWith("line 4:") && problems[1].includes("`pages` must be an integer"), `problem 2: ${problems}`);
  expect((await cells()).length === 0, "a preview writes nothing");
  await submit("#import-confirm");
  expect((await page.textContent(".flash")).includes("Imported 2 rows."), "import notice");
  rows = await cells();
  expect(rows.length === 2, `after import: ${JSON.stringify(rows)}`);
  report.problems = problems;

  await page.goto(consoleUrl + "/database");
  const count = await page.textContent("#tables tr[data-table=books] .rows");
  expect(count.trim() === "2", `row count on the list: ${count}`);
  await page.fill("#sql textarea[name=sql]", "SELECT title FROM books ORDER BY title");
  await submit("#sql");
  const titles = await page.$$eval("#sql-result tbody td", (tds) => tds.map((td) => td.textContent));
  expect(JSON.stringify(titles) === JSON.stringify(["Alpha", "Delta"]), `sql result: ${titles}`);
  await page.fill("#sql textarea[name=sql]", "DELETE FROM books");
  await submit("#sql");
  const sqlError = await page.textContent("#db-error");
  expect(sqlError.includes("only a SELECT"), `sql refusal: ${sqlError}`);
  report.sql = sqlError;

  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(JSON.stringify(report));
} catch (error) {
  fail(String(error && error.stack || error));
} finally {
  await browser.close();
}
process.exit(0);
