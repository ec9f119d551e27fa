// API keys' usage per UTC day: requests and errors, tokens, and each key's totals.

import { sparkline, stackedBars } from "../charts.js";
import { el, fmt } from "../dom.js";
import { SortableTable } from "../table.js";

function perDay(key, since, count, field) {
  const values = new Array(count).fill(0);
  const start = Date.parse(since);
  for (const day of key.days) values[Math.round((Date.parse(day.day) - start) / 86400000)] = day[field];
  return values;
}

export function usagePage(section) {
  const requests = el("figure", {}, el("figcaption", { text: "Requests per day, all keys (errors: status 400 or above)" }));
  const tokens = el("figure", {}, el("figcaption", { text: "Tokens per day, all keys" }));
  let span = { since: null, count: 0 };
  const columns = [
    { key: "id", label: "key", cell: (k) => el("code", { text: k.id }) },
    { key: "name", label: "name" },
    { key: "status", label: "status", cell: (k) => el("span", { class: `badge ${k.status}`, text: k.status }) },
    { key: "scopes", label: "scopes", value: (k) => k.scopes.join(" "), cell: (k) => k.scopes.join(", ") },
    { key: "requests", label: "requests", numeric: true, value: (k) => k.totals.requests, cell: (k) => fmt(k.totals.requests) },
    { key: "errors", label: "errors", numeric: true, value: (k) => k.totals.errors, cell: (k) => fmt(k.totals.errors) },
    { key: "prompt", label: "prompt tokens", numeric: true, value: (k) => k.totals.prompt_tokens, cell: (k) => fmt(k.totals.prompt_tokens) },
    { key: "completion", label: "completion tokens", numeric: true, value: (k) => k.totals.completion_tokens, cell: (k) => fmt(k.totals.completion_tokens) },
    { key: "trend", label: "requests per day", value: (k) => k.totals.requests, cell: (k) => sparkline(perDay(k, span.since, span.count, "requests")) },
  ];
  const table = new SortableTable(columns, { sortKey: "requests", descending: true, emptyText: "no API keys yet" });
  section.append(el("h2", { text: "API key usage" }), el("div", { class: "charts" }, requests, tokens), table.element);

  return async (api) => {
    const data = await api("/api/v1/dashboard/usage");
    span = { since: data.since, count: data.days.length };
    const days = data.days.map((d) => d.day.slice(5));
    const tickEvery = Math.max(1, Math.ceil(days.length / 8));
    requests.replaceChildren(
      requests.firstChild,
      stackedBars({
        categories: days,
        series: [
          { name: "ok", cls: "ok", values: data.days.map((d) => d.requests - d.errors) },
          { name: "errors", cls: "errors", values: data.days.map((d) => d.errors) },
        ],
        label: "requests per day",
        tickEvery,
      }),
    );
    tokens.replaceChildren(
      tokens.firstChild,
      stackedBars({
        categories: days,
        series: [
          { name: "prompt", cls: "prompt", values: data.days.map((d) => d.prompt_tokens) },
          { name: "completion", cls: "completion", values: data.days.map((d) => d.completion_tokens) },
        ],
        label: "tokens per day",
        tickEvery,
      }),
    );
    table.setRows(data.keys);
  };
}
