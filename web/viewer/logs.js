// Live tail for the viewer's log page: appends records from /logs/stream as they happen,
// keeping the level filter of the page.
(function () {
  "use strict";
  const pre = document.getElementById("logs");
  if (!pre || !window.EventSource) return;
  const order = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
  const minimum = order.indexOf((pre.dataset.level || "INFO").toUpperCase());
  const source = new EventSource("/logs/stream?after=" + encodeURIComponent(pre.dataset.after || "0"));
  source.onmessage = function (event) {
    let record;
    try { record = JSON.parse(event.data); } catch (_) { return; }
    if (order.indexOf(record.level) < minimum) return;
    const fields = (record.fields || []).map(function (f) { return f[0] + "=" + f[1]; }).join(" ");
    const line = new Date(record.ts).toISOString() + " " + record.level + " " + record.target + ": " + record.message + (fields ? " " + fields : "") + "\n";
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(line));
    while (pre.childNodes.length > 2000) pre.removeChild(pre.firstChild);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };
})();
