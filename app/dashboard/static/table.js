// A table sorted by clicking a column header (again: the other way). The sort survives new rows, so a
// refresh every few seconds does not undo what the operator chose.

import { el } from "./dom.js";

// columns: [{ key, label, value(row) -> sort key, cell(row) -> string | Node, numeric }]
export class SortableTable {
  constructor(columns, { sortKey, descending = false, emptyText = "nothing yet" } = {}) {
    this.columns = columns;
    this.sortKey = sortKey ?? columns[0].key;
    this.descending = descending;
    this.emptyText = emptyText;
    this.rows = [];
    this.head = el("tr");
    this.body = el("tbody");
    this.element = el("table", { class: "data" }, el("thead", {}, this.head), this.body);
    for (const column of columns) {
      const button = el("button", { type: "button", text: column.label });
      button.addEventListener("click", () => this.sortBy(column.key));
      this.head.append(el("th", { "data-key": column.key, class: column.numeric ? "num" : null }, button));
    }
  }

  sortBy(key) {
    this.descending = key === this.sortKey ? !this.descending : false;
    this.sortKey = key;
    this.render();
  }

  setRows(rows) {
    this.rows = rows;
    this.render();
  }

  render() {
    const column = this.columns.find((c) => c.key === this.sortKey);
    const value = column.value ?? ((row) => row[column.key]);
    const sign = this.descending ? -1 : 1;
    const sorted = [...this.rows].sort((a, b) => {
      const x = value(a);
      const y = value(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
    for (const th of this.head.children) {
      const sorted = th.dataset.key === this.sortKey;
      th.setAttribute("aria-sort", sorted ? (this.descending ? "descending" : "ascending") : "none");
    }
    const trs = sorted.map((row) =>
      el(
        "tr",
        {},
        ...this.columns.map((c) => {
          const content = c.cell ? c.cell(row) : String(row[c.key] ?? "");
          return el("td", { class: c.numeric ? "num" : null }, content);
        }),
      ),
    );
    if (!trs.length) {
      trs.push(el("tr", { class: "empty" }, el("td", { colspan: this.columns.length, text: this.emptyText })));
    }
    this.body.replaceChildren(...trs);
  }
}
