// Small DOM helpers. Text always goes in through textContent: values from the chain are never HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function shortKey(key) {
  return key.length > 14 ? `${key.slice(0, 6)}…${key.slice(-6)}` : key;
}

export function timeOf(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { hour12: false }) : "";
}

// A page section's error line: shown while the last refresh failed, cleared by the next success.
export function errorLine(section) {
  let line = section.querySelector(":scope > .error");
  if (!line) {
    line = el("p", { class: "error", role: "alert" });
    section.prepend(line);
  }
  return line;
}
