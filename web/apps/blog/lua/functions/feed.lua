--- The blog's Atom feed (feed.atom): the newest twenty published posts.
-- The peer makes this page when a feed reader asks for feed.atom; links are relative to it, so
-- they lead to the blog wherever it is read from (/p/<peer>/ in any console).
local function escape(text)
  return (tostring(text or ""):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;",
  }))
end

function call(request)
  local posts = goop.db.query(
    "SELECT _id, title, body, tags, published_at, _updated_at FROM posts ORDER BY published_at DESC, _id DESC LIMIT 20")
  local me = goop.self
  local name = me.label ~= "" and me.label or me.id
  local updated = posts[1] and posts[1].published_at or "1970-01-01T00:00:00Z"
  local out = {
    '<?xml version="1.0" encoding="utf-8"?>',
    '<feed xmlns="http://www.w3.org/2005/Atom">',
    "  <title>" .. escape(name .. "'s blog") .. "</title>",
    "  <id>urn:goop:" .. escape(me.id) .. ":blog</id>",
    '  <link rel="alternate" type="text/html" href="./"/>',
    '  <link rel="self" type="application/atom+xml" href="feed.atom"/>',
    "  <updated>" .. escape(updated) .. "</updated>",
    "  <author><name>" .. escape(name) .. "</name></author>",
    "  <generator>Goop²</generator>",
  }
  for _, post in ipairs(posts) do
    out[#out + 1] = "  <entry>"
    out[#out + 1] = "    <title>" .. escape(post.title) .. "</title>"
    out[#out + 1] = "    <id>urn:goop:" .. escape(me.id) .. ":post:" .. post._id .. "</id>"
    out[#out + 1] = '    <link rel="alternate" type="text/html" href="./#/post/' .. post._id .. '"/>'
    out[#out + 1] = "    <published>" .. escape(post.published_at) .. "</published>"
    out[#out + 1] = "    <updated>" .. escape(post._updated_at) .. "</updated>"
    for tag in tostring(post.tags or ""):gmatch("[^,]+") do
      local term = tag:match("^%s*(.-)%s*$")
      if term ~= "" then out[#out + 1] = '    <category term="' .. escape(term) .. '"/>' end
    end
    out[#out + 1] = '    <content type="text">' .. escape(post.body) .. "</content>"
    out[#out + 1] = "  </entry>"
  end
  out[#out + 1] = "</feed>"
  return table.concat(out, "\n") .. "\n"
end
