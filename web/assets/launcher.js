// The launcher's page: the peers of the launcher's directory, live from /api/events, and the
// buttons that call /api/… with the page's CSRF token. Everything shown is built with
// textContent: labels and log lines are never read as HTML.
(function () {
  "use strict";
  const csrf = document.body.dataset.csrf || "";
  const flash = document.getElementById("flash");
  const peersBody = document.querySelector("#peers tbody");
  const trashBody = document.querySelector("#trash tbody");
  let logSource = null;

  function say(text, error) {
    flash.textContent = text;
    flash.classList.toggle("error", !!error);
    flash.hidden = !text;
  }

  async function call(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? "" : JSON.stringify(body),
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch (_) {
      answer = null;
    }
    if (!response.ok) {
      throw new Error((answer && answer.error) || response.status + " " + response.statusText);
    }
    return answer;
  }

  function act(path, body, done) {
    return call(path, body).then(
      (answer) => {
        say(done ? done(answer) : "");
        return answer;
      },
      (err) => {
        say(err.message, true);
      },
    );
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function button(text, onClick, name) {
    const b = el("button", text);
    b.type = "button";
    if (name) b.name = name;
    b.addEventListener("click", onClick);
    return b;
  }

  // The console's URL: its own address, with a wildcard host read as this machine.
  function consoleUrl(addr, path) {
    let host = addr;
    if (host.startsWith("0.0.0.0:")) host = "127.0.0.1:" + host.slice(8);
    if (host.startsWith("[::]:")) host = "[::1]:" + host.slice(5);
    return "http://" + host + (path || "/");
  }

  function running(peer) {
    return !!peer.elsewhere || peer.process.phase === "running" || peer.process.phase === "stopping";
  }

  function stateCell(peer) {
    const td = el("td");
    const p = peer.process;
    let text;
    if (peer.elsewhere) {
      text = "running outside the launcher (pid " + peer.elsewhere.pid + ")";
    } else if (p.phase === "running") {
      text = "running (pid " + p.pid + ")";
    } else if (p.phase === "restarting") {
      const wait = Math.max(0, Math.round((p.retry_at_ms - Date.now()) / 1000));
      text = "crashed; restarting in " + wait + " s";
    } else if (p.phase === "failed") {
      text = "failed";
    } else {
      text = p.phase;
    }
    td.appendChild(el("span", text, "phase " + p.phase));
    if (p.restarts) td.appendChild(el("div", p.restarts + " restart(s) after crashes", "muted"));
    if (p.last_exit && p.phase !== "stopped") td.appendChild(el("div", "The process " + p.last_exit + ".", "muted"));
    if (p.last_error && p.phase !== "running") td.appendChild(el("div", p.last_error, "flash error crash"));
    return td;
  }

  function peerRow(peer) {
    const tr = el("tr");
    tr.dataset.peer = peer.name;
    const who = el("td");
    who.appendChild(el("strong", peer.label));
    who.appendChild(el("span", " " + peer.name, "muted"));
    if (peer.kind === "rendezvous") who.appendChild(el("span", "Rendezvous", "badge rendezvous"));
    if (peer.kind === "peer" && peer.hub_port) who.appendChild(el("span", "hosts a hub", "badge"));
    if (peer.peer_id) {
      const id = el("div", peer.peer_id.slice(0, 12) + "…", "muted");
      id.title = peer.peer_id;
      who.appendChild(id);
    }
    if (peer.joins) who.appendChild(el("div", "joins " + peer.joins, "muted"));
    if (peer.problem) who.appendChild(el("div", peer.problem, "flash error problem"));
    tr.appendChild(who);
    tr.appendChild(stateCell(peer));

    const ports = [];
    if (peer.console) ports.push("console " + peer.console.split(":").pop());
    if (peer.p2p_port) ports.push("libp2p " + peer.p2p_port);
    if (peer.hub_port) ports.push("hub " + peer.hub_port);
    tr.appendChild(el("td", ports.join(", ")));
    tr.appendChild(el("td", peer.template || "—"));

    const auto = el("td");
    const box = el("input");
    box.type = "checkbox";
    box.name = "autostart";
    box.checked = peer.autostart;
    box.disabled = !!peer.problem;
    box.addEventListener("change", () =>
      act("/api/peers/" + encodeURIComponent(peer.name) + "/autostart", { on: box.checked }),
    );
    auto.appendChild(box);
    tr.appendChild(auto);

    const actions = el("td");
    const on = running(peer);
    const ours = !peer.elsewhere;
    const path = "/api/peers/" + encodeURIComponent(peer.name);
    // A child crashing over and over, or given up on, can still be stopped for good.
    const stoppable = ours && peer.process.phase !== "stopped";
    if (!peer.problem) {
      if (peer.kind === "rendezvous") {
        // As the seed has it: a hub's button opens its settings, starting it first if need be.
        actions.appendChild(button("Configure", () => configure(peer), "configure"));
      } else if (!on) {
        actions.appendChild(button("Start", () => act(path + "/start"), "start"));
      }
      if (stoppable) {
        actions.appendChild(button("Stop", () => act(path + "/stop"), "stop"));
        actions.appendChild(button("Restart", () => act(path + "/restart"), "restart"));
      }
      if (on && peer.console && peer.kind === "peer") {
        const open = el("a", "Open console", "button");
        open.href = consoleUrl(peer.console, "/");
        open.target = "_blank";
        open.rel = "noopener";
        actions.appendChild(open);
      }
    }
    actions.appendChild(button("Output", () => showLogs(peer.name), "logs"));
    if (ours) actions.appendChild(button("Delete", () => remove(peer), "delete"));
    tr.appendChild(actions);
    return tr;
  }

  async function configure(peer) {
    // Opened now, while the click still allows a new tab; pointed at the settings once up.
    const tab = window.open("about:blank", "_blank");
    if (!running(peer)) {
      const started = await act("/api/peers/" + encodeURIComponent(peer.name) + "/start");
      if (!started) {
        if (tab) tab.close();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const url = consoleUrl(peer.console, "/self");
    if (tab) tab.location = url;
    else window.location = url;
  }

  function remove(peer) {
    const typed = window.prompt(
      "Delete " + peer.label + "? It is stopped and moved to the trash (its identity key too), " +
        "from where it can be restored. Type its name, " + peer.name + ", to confirm.",
    );
    if (typed === null) return;
    act("/api/peers/" + encodeURIComponent(peer.name) + "/delete", { confirm: typed }, () => peer.name + " is in the trash.");
  }

  function trashRow(item) {
    const tr = el("tr");
    tr.dataset.trash = item.id;
    const who = el("td");
    who.appendChild(el("strong", item.label));
    who.appendChild(el("span", " " + item.name, "muted"));
    tr.appendChild(who);
    tr.appendChild(el("td", new Date(item.deleted_ms).toLocaleString()));
    const td = el("td");
    td.appendChild(
      button("Restore", () =>
        act("/api/trash/" + encodeURIComponent(item.id) + "/restore", undefined, (answer) =>
          [item.name + " is back."].concat(answer.notes || []).join(" "),
        ), "restore"),
    );
    tr.appendChild(td);
    return tr;
  }

  function render(state) {
    peersBody.replaceChildren(...state.peers.map(peerRow));
    document.getElementById("empty").hidden = state.peers.length > 0;
    trashBody.replaceChildren(...state.trash.map(trashRow));
    document.getElementById("trash-empty").hidden = state.trash.length > 0;
    document.documentElement.dataset.theme = state.theme;
    document.getElementById("theme").value = state.theme;
  }

  function showLogs(name) {
    if (logSource) logSource.close();
    const pre = document.getElementById("logs");
    pre.replaceChildren();
    document.getElementById("logs-name").textContent = name;
    document.getElementById("logs-panel").hidden = false;
    logSource = new EventSource("/api/peers/" + encodeURIComponent(name) + "/logs");
    logSource.onmessage = (event) => {
      const record = JSON.parse(event.data);
      const line = el("div", record.message, record.target === "launcher" ? "launcher-line" : "");
      pre.appendChild(line);
      while (pre.childNodes.length > 1000) pre.removeChild(pre.firstChild);
      pre.scrollTop = pre.scrollHeight;
    };
    logSource.addEventListener("lagged", (event) => {
      pre.appendChild(el("div", "… " + JSON.parse(event.data).missed + " lines missed"));
    });
  }

  document.getElementById("logs-close").addEventListener("click", () => {
    if (logSource) logSource.close();
    logSource = null;
    document.getElementById("logs-panel").hidden = true;
  });
  document.getElementById("start-all").addEventListener("click", () =>
    act("/api/start-all", undefined, (answer) =>
      answer.outcomes
        .filter((o) => !o.started)
        .map((o) => o.name + ": " + o.error)
        .join(" "),
    ),
  );
  document.getElementById("stop-all").addEventListener("click", () => act("/api/stop-all"));
  document.getElementById("theme").addEventListener("change", (event) =>
    act("/api/theme", { theme: event.target.value }, (answer) =>
      answer.refused.length ? "Not changed: " + answer.refused.join("; ") : "",
    ),
  );
  document.getElementById("create").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const body = {
      name: form.name.value.trim(),
      label: form.label.value.trim(),
      template: form.template.value,
      hub: form.hub.value.trim(),
      host_hub: form.host_hub.checked,
      rendezvous_only: form.rendezvous_only.checked,
      hub_password: form.hub_password.value,
      autostart: form.autostart.checked,
    };
    act("/api/peers", body, (peer) => {
      form.reset();
      return "Created " + peer.label + " (" + peer.name + "). Start it when you like.";
    });
  });

  const events = new EventSource("/api/events");
  events.addEventListener("peers", (event) => render(JSON.parse(event.data)));
  events.onerror = () => say("The launcher does not answer; retrying…", true);
  events.onopen = () => {
    if (flash.textContent.startsWith("The launcher does not answer")) say("");
  };
})();
