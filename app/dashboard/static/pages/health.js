// Health: /ready's checks (database, chain, backends) and each inference backend as the router sees it.

import { el, fmt } from "../dom.js";
import { SortableTable } from "../table.js";

function summary(data) {
  return Object.entries(data || {})
    .map(([name, value]) => `${name}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" · ");
}

const CHECKS = [
  { key: "name", label: "dependency" },
  { key: "status", label: "status", cell: (c) => el("span", { class: `badge ${c.status}`, text: c.status }) },
  { key: "detail", label: "detail" },
  { key: "data", label: "data", value: (c) => summary(c.data), cell: (c) => summary(c.data) },
];

const BACKENDS = [
  { key: "name", label: "backend" },
  { key: "kind", label: "kind" },
  { key: "base_url", label: "base URL", cell: (b) => el("code", { text: b.base_url }) },
  {
    key: "healthy",
    label: "health",
    value: (b) => (b.healthy ? 1 : 0),
    cell: (b) => el("span", { class: `badge ${b.healthy ? "ok" : "down"}`, text: b.healthy ? "healthy" : "down" }),
  },
  { key: "models", label: "models", value: (b) => b.models.join(" "), cell: (b) => b.models.join(", ") },
  { key: "in_flight", label: "in flight", numeric: true },
  { key: "weight", label: "weight", numeric: true, cell: (b) => fmt(b.weight) },
  { key: "cooldown_remaining", label: "cool-down s", numeric: true, cell: (b) => fmt(b.cooldown_remaining, 1) },
  { key: "last_error", label: "last error" },
];

export function healthPage(section) {
  const overall = el("p", { class: "summary" });
  const checks = new SortableTable(CHECKS, { sortKey: "name" });
  const backends = new SortableTable(BACKENDS, { sortKey: "name", emptyText: "no inference backends configured (PYLON_BACKENDS)" });
  section.append(
    el("h2", { text: "Health" }),
    overall,
    el("h3", { text: "Readiness (/ready)" }),
    checks.element,
    el("h3", { text: "Inference backends" }),
    backends.element,
  );

  return async (api) => {
    // /ready answers 503 (with the same body) while a dependency is down: that is data here.
    const [ready, router] = await Promise.all([api("/ready", [503]), api("/api/v1/dashboard/backends")]);
    overall.replaceChildren("Pylon is ", el("span", { class: `badge ${ready.status}`, text: ready.status }));
    checks.setRows(Object.entries(ready.checks).map(([name, check]) => ({ name, ...check })));
    backends.setRows(router.backends);
  };
}
