// Small charts drawn by hand: stacked day columns and a sparkline in SVG, bar lists in
// HTML. Colours come from CSS classes (the page's policy allows no inline style).

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The top of the axis: four round steps that reach `max`, so every grid line has a
// readable label.
function niceMax(max) {
  if (max <= 0) return 4;
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].find((s) => s * power >= rough) * power;
  return step * 4;
}

/**
 * Stacked columns, one per label.
 * series: [{name, cls, values: [number per label]}]; format(value) labels the axis and
 * the tooltip; labelOf(label) shortens the x labels.
 */
export function columns(container, { labels, series, format, labelOf = (l) => l }) {
  const width = 600;
  const height = 190;
  const left = 62;
  const bottom = 22;
  const top = 8;
  const plotW = width - left - 6;
  const plotH = height - top - bottom;
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (let g = 0; g <= 4; g++) {
    const y = top + plotH - (plotH * g) / 4;
    chart.append(svg("line", { class: "grid", x1: left, x2: width - 6, y1: y, y2: y }));
    const tick = svg("text", { x: left - 6, y: y + 3, "text-anchor": "end" });
    tick.textContent = format((max * g) / 4);
    chart.append(tick);
  }
  if (!totals.some((t) => t > 0)) {
    const empty = svg("text", { class: "empty", x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" });
    empty.textContent = "Nothing in this period yet";
    chart.append(empty);
  }
  const slot = plotW / Math.max(labels.length, 1);
  const barW = Math.max(2, Math.min(28, slot * 0.7));
  const every = Math.ceil(labels.length / 10); // at most ~10 x labels
  labels.forEach((label, i) => {
    const x = left + slot * i + (slot - barW) / 2;
    let y = top + plotH;
    const group = svg("g", { class: "column", "data-label": label });
    const tip = [`${label}: ${format(totals[i])}`];
    for (const s of series) {
      const value = s.values[i] || 0;
      if (value > 0) {
        const h = (plotH * value) / max;
        y -= h;
        group.append(svg("rect", { class: `bar ${s.cls}`, x, y, width: barW, height: Math.max(h, 0.5) }));
        if (series.length > 1) tip.push(`${s.name} ${format(value)}`);
      }
    }
    group.append(svg("title", {}, tip.join("\n")));
    chart.append(group);
    if (i % every === 0 || i === labels.length - 1) {
      const text = svg("text", { x: x + barW / 2, y: height - 6, "text-anchor": "middle" });
      text.textContent = labelOf(label);
      chart.append(text);
    }
  });
  container.replaceChildren(chart);
}

/** A legend for `columns`: a swatch and a name per series. */
export function legend(container, series) {
  container.replaceChildren(
    ...series.map((s) => {
      const item = el("span");
      item.append(el("i", s.cls), s.name);
      return item;
    }),
  );
}

/**
 * One horizontal bar per row, longest first: rows [{name, parts: [{cls, value}], text}].
 * Bars are scaled to the largest row's total.
 */
export function barList(container, rows, emptyText) {
  if (!rows.length) {
    container.replaceChildren(el("div", "empty", emptyText));
    return;
  }
  const totals = rows.map((r) => r.parts.reduce((sum, p) => sum + p.value, 0));
  const max = Math.max(...totals, 1e-12);
  container.replaceChildren(
    ...rows.map((row, i) => {
      const line = el("div", "row");
      line.dataset.name = row.name;
      const name = el("span", "name", row.name);
      name.title = row.name;
      const track = el("div", "track");
      for (const part of row.parts) {
        const fill = el("span", part.cls);
        fill.style.width = `${(100 * part.value) / max}%`;
        track.append(fill);
      }
      track.title = row.tip || row.text;
      line.append(name, track, el("span", "value", row.text));
      return line;
    }),
  );
  return totals;
}

/** A sparkline of recent samples (oldest first), scaled to at least `floor`. */
export function sparkline(container, samples, floor = 1) {
  const width = 300;
  const height = 40;
  const max = Math.max(floor, ...samples);
  const step = width / Math.max(samples.length - 1, 1);
  const points = samples
    .map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - ((height - 4) * v) / max).toFixed(1)}`)
    .join(" ");
  container.replaceChildren(
    svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" },
      svg("line", { class: "base", x1: 0, x2: width, y1: height - 2, y2: height - 2, "vector-effect": "non-scaling-stroke" }),
      svg("polyline", { points, "vector-effect": "non-scaling-stroke" }),
    ),
  );
}
