// Charts drawn as inline SVG: bars (plain or stacked), a timeline of dots in lanes, a sparkline.
// Colours come from CSS classes (dashboard.css), so the page's CSP needs no inline styles.

const NS = "http://www.w3.org/2000/svg";
const W = 800;
const PAD = { left: 56, right: 8, top: 12, bottom: 22 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(height, label) {
  return svg("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart", role: "img", "aria-label": label });
}

function shortNumber(value) {
  return value.toLocaleString("en-US", { notation: "compact", maximumFractionDigits: 2 });
}

function yAxis(root, height, max) {
  const bottom = height - PAD.bottom;
  root.append(
    svg("line", { x1: PAD.left, x2: W - PAD.right, y1: bottom, y2: bottom, class: "axis" }),
    svg("text", { x: PAD.left - 6, y: PAD.top + 8, class: "tick end" }, shortNumber(max)),
    svg("text", { x: PAD.left - 6, y: bottom, class: "tick end" }, "0"),
  );
}

// series: [{ name, cls, values: [number per category] }], stacked bottom to top.
export function stackedBars({ categories, series, height = 180, label, tickEvery = 1 }) {
  const root = frame(height, label);
  const totals = categories.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  // An all-zero series still gets an axis from 0 to 1 instead of dividing by zero.
  const max = Math.max(...totals) || 1;
  const plotH = height - PAD.top - PAD.bottom;
  const step = (W - PAD.left - PAD.right) / Math.max(1, categories.length);
  const barW = Math.max(1, step * 0.8);
  yAxis(root, height, max);
  categories.forEach((category, i) => {
    let y = height - PAD.bottom;
    const x = PAD.left + i * step + (step - barW) / 2;
    for (const s of series) {
      const h = ((s.values[i] || 0) / max) * plotH;
      if (h <= 0) continue;
      y -= h;
      const bar = svg("rect", { x, y, width: barW, height: h, class: `bar ${s.cls}` });
      bar.append(svg("title", {}, `${category} · ${s.name}: ${(s.values[i] || 0).toLocaleString("en-US")}`));
      root.append(bar);
    }
    if (i % tickEvery === 0) {
      root.append(svg("text", { x: x + barW / 2, y: height - 6, class: "tick mid" }, String(category)));
    }
  });
  return root;
}

// points: [{ time (ms), lane, cls, title }]; lanes listed top to bottom, their names in the left margin.
export function timeline({ points, lanes, height = 200, label }) {
  const root = frame(height, label);
  const left = 96;
  const plotH = height - PAD.top - PAD.bottom;
  const laneH = plotH / Math.max(1, lanes.length);
  const times = points.map((p) => p.time);
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const span = Math.max(1, t1 - t0);
  const plotW = W - left - PAD.right - 12;
  lanes.forEach((lane, i) => {
    const y = PAD.top + laneH * (i + 0.5);
    root.append(
      svg("line", { x1: left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }),
      svg("text", { x: left - 6, y: y + 4, class: "tick end" }, lane),
    );
  });
  for (const point of points) {
    const x = left + 6 + (points.length > 1 ? ((point.time - t0) / span) * plotW : plotW / 2);
    const y = PAD.top + laneH * (lanes.indexOf(point.lane) + 0.5);
    const dot = svg("circle", { cx: x, cy: y, r: 5, class: `dot ${point.cls}` });
    dot.append(svg("title", {}, point.title));
    root.append(dot);
  }
  if (points.length) {
    const when = (t) => new Date(t).toLocaleTimeString("en-GB", { hour12: false });
    root.append(
      svg("text", { x: left + 6, y: height - 6, class: "tick" }, when(t0)),
      svg("text", { x: W - PAD.right, y: height - 6, class: "tick end" }, when(t1)),
    );
  }
  return root;
}

export function sparkline(values, { width = 120, height = 24 } = {}) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img" });
  const max = Math.max(1, ...values);
  const step = width / Math.max(1, values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  root.append(svg("polyline", { points: points.join(" "), class: "line" }));
  return root;
}
