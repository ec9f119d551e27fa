// Weights jobs over time: a count per outcome, a timeline of jobs by status, and the newest jobs.

import { timeline } from "../charts.js";
import { el, fmt, shortKey, timeOf } from "../dom.js";
import { SortableTable } from "../table.js";

const LANES = ["set", "committed", "pending", "running", "superseded", "expired", "failed"];

const COLUMNS = [
  { key: "id", label: "job", numeric: true },
  { key: "created_at", label: "created", cell: (j) => timeOf(j.created_at) },
  { key: "identity", label: "identity" },
  { key: "netuid", label: "netuid", numeric: true },
  { key: "status", label: "status", cell: (j) => el("span", { class: `badge ${j.status}`, text: j.status }) },
  { key: "mode", label: "mode", cell: (j) => j.mode || "" },
  { key: "count", label: "weights", numeric: true },
  { key: "attempts", label: "attempts", numeric: true },
  { key: "applied_block", label: "block", numeric: true, value: (j) => j.applied_block ?? -1, cell: (j) => fmt(j.applied_block ?? null) },
  { key: "extrinsic_hash", label: "extrinsic", cell: (j) => (j.extrinsic_hash ? el("code", { title: j.extrinsic_hash, text: shortKey(j.extrinsic_hash) }) : "") },
  { key: "last_error", label: "last error", value: (j) => j.last_error || "", cell: (j) => j.last_error || "" },
];

export function weightsPage(section) {
  const counts = el("p", { class: "chips" });
  const chart = el("figure", {}, el("figcaption", { text: "Jobs by creation time and outcome" }));
  const table = new SortableTable(COLUMNS, { sortKey: "id", descending: true, emptyText: "no weights jobs yet" });
  section.append(el("h2", { text: "Weights jobs" }), counts, chart, table.element);

  return async (api) => {
    const data = await api("/api/v1/dashboard/weights");
    counts.replaceChildren(
      el("span", { class: "chip", text: `${data.jobs.length} jobs` }),
      ...LANES.filter((s) => data.counts[s]).map((s) => el("span", { class: `badge ${s}`, text: `${s} ${data.counts[s]}` })),
    );
    const points = data.jobs.map((j) => ({
      time: Date.parse(j.created_at),
      lane: j.status,
      cls: j.status,
      title: `job ${j.id} · ${j.identity} on subnet ${j.netuid} · ${j.status}${j.last_error ? ` · ${j.last_error}` : ""}`,
    }));
    chart.replaceChildren(
      chart.firstChild,
      points.length ? timeline({ points, lanes: LANES, label: "weights jobs over time" }) : el("p", { class: "muted", text: "no weights jobs yet" }),
    );
    table.setRows(data.jobs);
  };
}
