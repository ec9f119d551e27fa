// The metagraph: a summary, stake and incentive per uid, and the sortable neuron table.

import { stackedBars } from "../charts.js";
import { el, fmt, shortKey } from "../dom.js";
import { SortableTable } from "../table.js";

const COLUMNS = [
  { key: "uid", label: "uid", numeric: true },
  { key: "hotkey", label: "hotkey", cell: (n) => el("code", { title: n.hotkey, text: shortKey(n.hotkey) }) },
  { key: "stake", label: "stake", numeric: true, cell: (n) => fmt(n.stake, 2) },
  { key: "trust", label: "trust", numeric: true, cell: (n) => fmt(n.trust) },
  { key: "incentive", label: "incentive", numeric: true, cell: (n) => fmt(n.incentive) },
  { key: "emission", label: "emission", numeric: true, cell: (n) => fmt(n.emission) },
  {
    key: "validator_permit",
    label: "validator permit",
    value: (n) => (n.validator_permit ? 1 : 0),
    cell: (n) => (n.validator_permit ? "yes" : ""),
  },
  { key: "axon", label: "axon", cell: (n) => el("code", { text: n.axon }) },
];

// Each value twice, split by permit, so validators and miners get their own colour in one chart.
function byPermit(neurons, field) {
  return [
    { name: "validator", cls: "validator", values: neurons.map((n) => (n.validator_permit ? n[field] : 0)) },
    { name: "miner", cls: "miner", values: neurons.map((n) => (n.validator_permit ? 0 : n[field])) },
  ];
}

export function metagraphPage(section) {
  const summary = el("p", { class: "summary" });
  const stake = el("figure", {}, el("figcaption", { text: "Stake per uid (validators darker)" }));
  const incentive = el("figure", {}, el("figcaption", { text: "Incentive per uid" }));
  const table = new SortableTable(COLUMNS, { sortKey: "uid" });
  section.append(el("h2", { text: "Metagraph" }), summary, el("div", { class: "charts" }, stake, incentive), table.element);

  return async (api) => {
    const data = await api("/api/v1/dashboard/metagraph");
    const validators = data.neurons.filter((n) => n.validator_permit).length;
    summary.textContent =
      `Subnet ${data.netuid} · block ${data.block.number} · ${data.neurons.length} neurons · ` +
      `${validators} validator permits${data.stale ? " · STALE (chain unreachable)" : ""}`;
    const uids = data.neurons.map((n) => n.uid);
    const tickEvery = Math.max(1, Math.ceil(uids.length / 16));
    stake.replaceChildren(stake.firstChild, stackedBars({ categories: uids, series: byPermit(data.neurons, "stake"), label: "stake per uid", tickEvery }));
    incentive.replaceChildren(
      incentive.firstChild,
      stackedBars({ categories: uids, series: byPermit(data.neurons, "incentive"), label: "incentive per uid", tickEvery }),
    );
    table.setRows(data.neurons);
  };
}
