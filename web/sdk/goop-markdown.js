// Goop² markdown: renders the markdown a visitor wrote into DOM nodes, never into HTML text, so
// nothing written can become markup or script. Headings, paragraphs, lists, quotes, code blocks,
// **bold**, *emphasis*, `code`, [links](https://…) (http, https and mailto only; anything else
// stays text) and, with `wikiLink`, [[Page name]] links.
//
//   const fragment = Goop.markdown.render(text, { wikiLink: (name) => "#/page/" + name });
//   element.replaceChildren(fragment);
(function (global) {
  "use strict";

  const SAFE_SCHEMES = /^(https?:|mailto:)/i;

  function el(name, children) {
    const node = document.createElement(name);
    (children || []).forEach(function (child) { node.append(child); });
    return node;
  }

  /** Inline markdown of one run of text, as nodes. */
  function inline(text, options) {
    const out = [];
    let rest = text;
    const patterns = [
      // ``a `b` c``: a code span that holds backticks (one space inside each end is dropped).
      { re: /^``\s?(.+?)\s?``/, make: (m) => el("code", [m[1]]) },
      { re: /^`([^`]+)`/, make: (m) => el("code", [m[1]]) },
      { re: /^\*\*([^*]+)\*\*/, make: (m) => el("strong", inline(m[1], options)) },
      { re: /^__([^_]+)__/, make: (m) => el("strong", inline(m[1], options)) },
      { re: /^\*([^*]+)\*/, make: (m) => el("em", inline(m[1], options)) },
      { re: /^_([^_]+)_/, make: (m) => el("em", inline(m[1], options)) },
      {
        re: /^\[\[([^\]]{1,100})\]\]/,
        make: (m) => {
          if (!options.wikiLink) return document.createTextNode(m[0]);
          const a = el("a", [m[1]]);
          a.href = options.wikiLink(m[1].trim());
          a.className = "wiki-link";
          return a;
        },
      },
      {
        re: /^\[([^\]]+)\]\(([^)\s]+)\)/,
        make: (m) => {
          if (!SAFE_SCHEMES.test(m[2])) return document.createTextNode(m[1]);
          const a = el("a", inline(m[1], options));
          a.href = m[2];
          a.rel = "noopener noreferrer nofollow";
          a.target = "_blank";
          return a;
        },
      },
    ];
    let plain = "";
    while (rest.length) {
      let matched = null;
      for (const pattern of patterns) {
        const m = rest.match(pattern.re);
        if (m) { matched = { node: pattern.make(m), length: m[0].length }; break; }
      }
      if (matched) {
        if (plain) { out.push(document.createTextNode(plain)); plain = ""; }
        out.push(matched.node);
        rest = rest.slice(matched.length);
      } else {
        plain += rest[0];
        rest = rest.slice(1);
      }
    }
    if (plain) out.push(document.createTextNode(plain));
    return out;
  }

  /** Markdown text as a DocumentFragment. */
  function render(text, options) {
    const opts = options || {};
    const fragment = document.createDocumentFragment();
    const lines = String(text || "").replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (/^\s*$/.test(line)) { i++; continue; }
      const fence = line.match(/^```/);
      if (fence) {
        const code = [];
        i++;
        while (i < lines.length && !/^```/.test(lines[i])) code.push(lines[i++]);
        i++;
        fragment.append(el("pre", [el("code", [code.join("\n")])]));
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      if (heading) {
        fragment.append(el("h" + Math.min(6, heading[1].length + 1), inline(heading[2], opts)));
        i++;
        continue;
      }
      if (/^>\s?/.test(line)) {
        const quoted = [];
        while (i < lines.length && /^>\s?/.test(lines[i])) quoted.push(lines[i++].replace(/^>\s?/, ""));
        fragment.append(el("blockquote", [render(quoted.join("\n"), opts)]));
        continue;
      }
      const bullet = /^\s*[-*+]\s+/;
      const numbered = /^\s*\d+[.)]\s+/;
      if (bullet.test(line) || numbered.test(line)) {
        const ordered = numbered.test(line);
        const marker = ordered ? numbered : bullet;
        const list = el(ordered ? "ol" : "ul");
        while (i < lines.length && marker.test(lines[i])) {
          list.append(el("li", inline(lines[i++].replace(marker, ""), opts)));
        }
        fragment.append(list);
        continue;
      }
      const paragraph = [];
      while (i < lines.length && !/^\s*$/.test(lines[i]) && !/^(#{1,6}\s|```|>)/.test(lines[i])) {
        paragraph.push(lines[i++]);
      }
      const p = el("p");
      paragraph.forEach(function (part, index) {
        if (index) p.append(el("br"));
        inline(part, opts).forEach(function (node) { p.append(node); });
      });
      fragment.append(p);
    }
    return fragment;
  }

  const BLOCK = /^(P|H[1-6]|LI|UL|OL|BLOCKQUOTE|PRE|HR|DIV)$/;

  /** The text of markdown without its marks (for summaries and feeds): blocks (paragraphs,
   *  headings, list items) are separated by a space, and runs of white space are one space. */
  function plainText(text) {
    const parts = [];
    (function walk(node) {
      node.childNodes.forEach(function (child) {
        if (child.nodeType === Node.TEXT_NODE) return parts.push(child.textContent);
        const block = BLOCK.test(child.nodeName);
        if (block) parts.push(" ");
        walk(child);
        if (block) parts.push(" ");
      });
    })(render(text));
    return parts.join("").replace(/\s+/g, " ").trim();
  }

  global.Goop = Object.assign(global.Goop || {}, { markdown: { render: render, plainText: plainText } });
})(window);
