// Live tail for the log pages: appends records from the page's stream as they happen. The page
// works without it (the recent log is rendered on the server); data-stream names the SSE
// endpoint, data-after the last record already shown, data-level the lowest level to show.
(function () {
  "use strict";
  const pre = document.getElementById("logs");
  if (!pre || !pre.dataset.stream || !window.EventSource) return;
  const order = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
  const minimum = Math.max(0, order.indexOf((pre.dataset.level || "TRACE").toUpperCase()));
  const source = new EventSource(pre.dataset.stream + "?after=" + encodeURIComponent(pre.dataset.after || "0"));
  source.onmessage = function (event) {
    let record;
    try { record = JSON.parse(event.data); } catch (_) { return; }
    if (order.indexOf(record.level) < minimum) return;
    const fields = (record.fields || []).map(function (f) { return f[0] + "=" + f[1]; }).join(" ");
    const line = new Date(record.ts).toISOString() + " " + record.level + " " + record.target + ": " +
      record.message + (fields ? " " + fields : "") + "\n";
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(line));
    while (pre.childNodes.length > 2000) pre.removeChild(pre.firstChild);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };
  // The page fell behind the log: say how many lines it skipped.
  source.addEventListener("lagged", function (event) {
    let missed = "some";
    try { missed = JSON.parse(event.data).missed; } catch (_) { /* keep "some" */ }
    pre.appendChild(document.createTextNode("… " + missed + " lines skipped: this page fell behind the log …\n"));
  });
})();
