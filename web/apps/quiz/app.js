// The quiz: questions and settings everyone reads, the answer key only the owner reads, and one
// response per visitor peer, handed in through the owner's Lua function `quiz` (which holds it
// to the quiz being open, to the timer, and to one per peer; the `responses` table is unique on
// `_owner` as well). Scores, counts and the leaderboard come from the Lua function `results`,
// which alone sees every response.
(async function () {
  "use strict";
  const status = document.getElementById("status");
  const me = await Goop.peer();
  let settings = null;
  let questions = [];

  function say(text, error) { status.textContent = text || ""; status.className = error ? "error" : ""; }
  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  // Lua sends an empty list as {}.
  function list(value) { return Array.isArray(value) ? value : []; }
  function options(q) { try { return JSON.parse(q.options || "[]"); } catch (_) { return []; } }
  function show(id) {
    ["build", "answer", "results"].forEach((s) => { document.getElementById(s).hidden = s !== id; });
  }

  async function load() {
    settings = (await Goop.data.find("settings", { order: "_id", limit: 1 }))[0] || null;
    questions = await Goop.data.find("questions", { order: "position, _id", limit: 200 });
    document.getElementById("title").textContent = settings ? settings.title : "Quiz";
    document.getElementById("intro").textContent = settings ? settings.intro : "";
  }

  // ---- The owner's builder -------------------------------------------------------------
  async function build() {
    show("build");
    const form = document.getElementById("settings");
    const s = settings || { title: "Quiz", intro: "", mode: "quiz", time_limit: 0, show_results: 1, open: 1 };
    form.elements.title.value = s.title;
    form.elements.intro.value = s.intro;
    form.elements.mode.value = s.mode;
    form.elements.time_limit.value = s.time_limit;
    form.elements.show_results.checked = !!s.show_results;
    form.elements.open.checked = !!s.open;
    const keys = await Goop.data.find("answer_key", { limit: 200 });
    const correct = new Map(keys.map((k) => [k.question_id, JSON.parse(k.correct)]));
    document.getElementById("question-list").replaceChildren(...questions.map((q) => {
      const li = el("li");
      li.dataset.id = q._id;
      li.append(el("h3", "", q.text));
      const opts = options(q);
      if (q.kind === "text") li.append(el("p", "", "Free text answer"));
      const list = el("ul");
      opts.forEach((o, i) => list.append(el("li", (correct.get(q._id) || []).includes(i) ? "correct" : "", o)));
      li.append(list);
      const remove = el("button", "", "Delete question");
      remove.addEventListener("click", async () => {
        try {
          await Goop.data.deleteWhere("answer_key", { where: "question_id = ?", args: [q._id] });
          await Goop.data.remove("questions", q._id);
          await load();
          await build();
        } catch (e) { say(e.message, true); }
      });
      const tools = el("div", "tools");
      tools.append(remove);
      li.append(tools);
      return li;
    }));
  }

  document.getElementById("settings").addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = event.target.elements;
    const values = { title: f.title.value.trim(), intro: f.intro.value.trim(), mode: f.mode.value,
      time_limit: Number(f.time_limit.value) || 0, show_results: f.show_results.checked ? 1 : 0, open: f.open.checked ? 1 : 0 };
    try {
      if (settings) await Goop.data.update("settings", settings._id, values);
      else await Goop.data.insert("settings", values);
      await load();
      say("Settings saved.");
    } catch (e) { say(e.message, true); }
  });

  document.getElementById("add-question").addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = event.target.elements;
    const lines = f.options.value.split("\n").map((l) => l.trim()).filter(Boolean);
    const correct = [];
    const opts = lines.map((line, i) => { if (line.startsWith("*")) { correct.push(i); return line.slice(1).trim(); } return line; });
    if (f.kind.value !== "text" && opts.length < 2) { say("A choice question needs at least two options.", true); return; }
    try {
      const made = await Goop.data.insert("questions", { text: f.text.value.trim(), kind: f.kind.value,
        options: JSON.stringify(f.kind.value === "text" ? [] : opts), position: questions.length + 1 });
      if (correct.length && f.kind.value !== "text") await Goop.data.insert("answer_key", { question_id: made._id, correct: JSON.stringify(correct) });
      event.target.reset();
      await load();
      await build();
      say("Question added.");
    } catch (e) { say(e.message, true); }
  });

  // ---- Answering -----------------------------------------------------------------------
  let timer = null;
  function answer(preview) {
    show("answer");
    const form = document.getElementById("answer-form");
    form.elements.name.value = me.myLabel || "";
    document.getElementById("answer-questions").replaceChildren(...questions.map((q) => {
      const li = el("li");
      li.dataset.id = q._id;
      li.append(el("h3", "", q.text));
      if (q.kind === "text") {
        const input = el("textarea");
        input.name = "q" + q._id;
        input.rows = 2;
        input.maxLength = 1000;
        li.append(input);
      } else {
        options(q).forEach((o, i) => {
          const label = el("label", "choice");
          const input = el("input");
          input.type = q.kind === "single" ? "radio" : "checkbox";
          input.name = "q" + q._id;
          input.value = String(i);
          label.append(input, o);
          li.append(label);
        });
      }
      return li;
    }));
    document.getElementById("send-answers").disabled = !!preview;
    const clock = document.getElementById("timer");
    clock.hidden = true;
    clearInterval(timer);
    if (!preview) {
      // The owner's peer starts the clock and holds the answers to it.
      Goop.data.call("quiz", { action: "start" }).then((begun) => {
        if (begun.left === null || begun.left === undefined) return;
        const until = Date.now() + begun.left * 1000;
        clock.hidden = false;
        const tick = () => {
          const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
          clock.textContent = String(left);
          clock.classList.toggle("low", left <= 5);
          if (left === 0) { clearInterval(timer); form.requestSubmit(); }
        };
        tick();
        timer = setInterval(tick, 250);
      }).catch((e) => say(e.message, true));
    }
    form.onsubmit = async (event) => {
      event.preventDefault();
      if (preview) return;
      clearInterval(timer);
      const answers = {};
      questions.forEach((q) => {
        if (q.kind === "text") answers[q._id] = (form.elements["q" + q._id].value || "").trim();
        else answers[q._id] = Array.from(form.querySelectorAll(`input[name=q${q._id}]:checked`)).map((i) => Number(i.value));
      });
      try {
        await Goop.data.call("quiz", { action: "submit", name: form.elements.name.value.trim(), answers: answers });
        say("Thank you! Your answers are in.");
        await results();
      } catch (e) {
        say(e.message, true);
      }
    };
  }

  // ---- Results -------------------------------------------------------------------------
  async function results() {
    show("results");
    const holder = document.getElementById("results");
    const r = await Goop.data.call("results", {});
    const parts = [];
    const summary = el("div", "card");
    summary.id = "summary";
    summary.append(el("p", "big", r.responses + " response" + (r.responses === 1 ? "" : "s")));
    if (r.mine && r.mode === "quiz") {
      const mine = el("p", "", "Your score: " + r.mine.score + " of " + r.out_of);
      mine.id = "my-score";
      mine.dataset.score = r.mine.score;
      summary.append(mine);
    }
    parts.push(summary);
    list(r.questions).forEach((q) => {
      const card = el("div", "card");
      card.append(el("h3", "", q.text));
      const counts = list(q.counts);
      const total = Math.max(1, ...counts);
      list(q.options).forEach((o, i) => {
        const bar = el("div", "bar" + (list(q.correct).includes(i) ? " is-correct" : ""));
        const fill = el("div", "fill");
        fill.style.width = (100 * (counts[i] || 0) / total) + "%";
        const track = el("div");
        track.append(fill);
        bar.append(el("span", "", o), track, el("span", "", String(counts[i] || 0)));
        card.append(bar);
      });
      if (q.kind === "text") {
        const texts = el("ul", "texts");
        list(q.texts).forEach((t) => texts.append(el("li", "", t)));
        card.append(texts);
      }
      parts.push(card);
    });
    if (r.leaderboard) {
      const card = el("div", "card");
      card.append(el("h3", "", "Leaderboard"));
      const table = el("table", "leaderboard");
      table.id = "leaderboard";
      list(r.leaderboard).forEach((entry, i) => {
        const tr = el("tr", entry.peer === me.myId ? "me" : "");
        tr.dataset.peer = entry.peer;
        tr.append(el("td", "", String(i + 1)), el("td", "", entry.name), el("td", "", entry.score + "/" + r.out_of), el("td", "", entry.seconds + " s"));
        table.append(tr);
      });
      card.append(table);
      parts.push(card);
    }
    if (!r.questions && !me.isOwner) parts.push(el("p", "empty", "The owner keeps the results to themselves."));
    holder.replaceChildren(...parts);
  }

  // ---- Start ---------------------------------------------------------------------------
  try {
    await load();
    if (me.isOwner) {
      const nav = document.getElementById("owner-nav");
      nav.hidden = false;
      nav.addEventListener("click", async (event) => {
        const button = event.target.closest("button");
        if (!button) return;
        nav.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b === button));
        say("");
        try {
          if (button.dataset.tab === "build") await build();
          else if (button.dataset.tab === "results") await results();
          else answer(true);
        } catch (e) { say(e.message, true); }
      });
      await build();
      if (!questions.length) say("Add your first question below; visitors answer at your site's address.");
    } else {
      const answered = await Goop.data.count("responses", { where: "_owner = ?", args: [me.myId] });
      if (answered) { say("You have answered this quiz."); await results(); }
      else if (!questions.length) say("There is no question here yet.");
      else if (settings && !settings.open) say("This quiz is closed.");
      else answer(false);
    }
  } catch (e) { say(e.message, true); }
  document.body.dataset.ready = "yes";
})();
