-- The wiki's first page.
local home = table.concat({
  "Welcome to this wiki. Every page can be edited by anyone who visits this peer,",
  "and every edit is kept in the page's history with the editor's peer ID.",
  "",
  "Link pages with double brackets: [[How to edit]] creates a link to a page, and following it",
  "lets you write that page.",
}, "\n")
return {
  pages = { { name = "Home", body = home } },
  revisions = { { page = "Home", body = home, summary = "first version", author = "the owner" } },
}
