// serialmint dashboard: the live overview. Polls the JSON of the same figures the page was
// rendered with and redraws the chart and tables in place (text only: no HTML is injected).
// Also asks for confirmation before a form marked data-confirm is posted.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const PERIOD_MS = 3000;

  function drawChart(perMinute) {
    const bars = document.getElementById("bars");
    if (!bars) return;
    const max = Math.max(1, ...perMinute);
    const n = perMinute.length;
    bars.replaceChildren();
    perMinute.forEach(function (count, i) {
      const h = Math.round((count / max) * 150);
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", String(i * 10 + 1));
      rect.setAttribute("y", String(160 - h));
      rect.setAttribute("width", "8");
      rect.setAttribute("height", String(h));
      const title = document.createElementNS(SVG, "title");
      title.textContent = count + " serials, " + (n - 1 - i) + " min ago";
      rect.appendChild(title);
      bars.appendChild(rect);
    });
    const total = perMinute.reduce(function (a, b) { return a + b; }, 0);
    const chart = document.getElementById("chart");
    if (chart) {
      chart.setAttribute("aria-label",
        "Serials per minute over the last hour: " + total + " in all");
    }
  }

  function fillTable(id, rows) {
    const table = document.querySelector('table[data-live-table="' + id + '"]');
    if (!table) return;
    const body = document.createElement("tbody");
    rows.forEach(function (row) {
      const tr = document.createElement("tr");
      row.forEach(function (cell) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.replaceChild(body, table.tBodies[0]);
  }

  function apply(figures) {
    Object.entries(figures.values).forEach(function ([name, text]) {
      document.querySelectorAll('[data-live="' + name + '"]').forEach(function (el) {
        el.textContent = text;
      });
    });
    Object.entries(figures.tables).forEach(function ([id, rows]) { fillTable(id, rows); });
    drawChart(figures.per_minute);
  }

  function poll(source) {
    fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (resp.status === 401) { window.location.assign("/ui/sign-in"); return null; }
        return resp.ok ? resp.json() : null;
      })
      .then(function (figures) { if (figures) apply(figures); })
      .catch(function () { /* the next poll tries again */ })
      .finally(function () { window.setTimeout(function () { poll(source); }, PERIOD_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const live = document.querySelector("[data-live-source]");
    if (live) window.setTimeout(function () { poll(live.dataset.liveSource); }, PERIOD_MS);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  });
})();
