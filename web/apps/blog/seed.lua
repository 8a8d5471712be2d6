-- A first post that tells the owner how the blog works; delete it once you have written yours.
return {
  posts = {
    {
      title = "Hello from my peer",
      tags = "welcome",
      body = table.concat({
        "This blog lives on my own peer: no server, no platform.",
        "",
        "## Writing",
        "Open **My site** in the console and press *New post*. Posts are written in markdown:",
        "",
        "- `**bold**`, `*emphasis*`, `` `code` `` and [links](https://example.org)",
        "- lists, > quotes and ``` code blocks",
        "",
        "Keep a post as a draft until it is ready; drafts are visible to you only.",
        "",
        "## Comments",
        "Visitors comment through their own peer, so every comment carries their peer ID. You can remove any comment.",
      }, "\n"),
    },
  },
}
