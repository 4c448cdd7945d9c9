/*
 * charts.js: RED time-series charts (uPlot) for the graph's side panel. A helper, not a view.
 */
import uPlot from '../vendor/uPlot.esm.js';
import { el, fmtMs, fmtNum } from './util.js';

const COLORS = { rate: '#2f6fde', errors: '#d9363e', p50: '#1f9d55', p95: '#c77c02', p99: '#8a3ffc' };

/**
 * A chart in a titled box. xs: epoch seconds; series: [{label, values, color}]. unit formats the
 * y axis and the legend. Returns {node, destroy()}.
 */
export function lineChart({ title, xs, series, unit, width = 380, height = 140 }) {
  const fmt = unit === 'ms' ? (v) => (v == null ? '–' : fmtMs(v)) :
    unit === '%' ? (v) => (v == null ? '–' : `${fmtNum(v)}%`) : (v) => (v == null ? '–' : fmtNum(v));
  const box = el('figure', { class: 'chart' }, el('figcaption', { text: title }));
  const opts = {
    width,
    height,
    cursor: { drag: { x: false, y: false } },
    legend: { show: series.length > 1 },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: '#5b6270', grid: { stroke: '#eceef2' }, ticks: { stroke: '#d0d4db' } },
      { stroke: '#5b6270', grid: { stroke: '#eceef2' }, ticks: { stroke: '#d0d4db' }, size: 56,
        values: (u, vals) => vals.map((v) => fmt(v)) },
    ],
    series: [
      {},
      ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, spanGaps: false,
        fill: series.length === 1 ? `${s.color}22` : undefined, value: (u, v) => fmt(v) })),
    ],
  };
  const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], box);
  return { node: box, destroy: () => plot.destroy() };
}

/**
 * The three RED charts of one node or edge. points: [{t (epoch s), item|null}] where item has
 * rps, error_rate, p50_ms, p95_ms, p99_ms.
 */
export function redCharts(points, width) {
  const xs = points.map((p) => p.t);
  const v = (f) => points.map((p) => (p.item ? f(p.item) : null));
  const zero = (f) => points.map((p) => (p.item ? f(p.item) : 0));
  return [
    lineChart({ title: 'Request rate (rps)', xs, width, unit: 'rps',
      series: [{ label: 'rps', values: zero((i) => i.rps ?? 0), color: COLORS.rate }] }),
    lineChart({ title: 'Error rate (%)', xs, width, unit: '%',
      series: [{ label: 'errors', values: zero((i) => (i.error_rate ?? 0) * 100), color: COLORS.errors }] }),
    lineChart({ title: 'Latency (ms)', xs, width, unit: 'ms',
      series: [
        { label: 'p50', values: v((i) => i.p50_ms), color: COLORS.p50 },
        { label: 'p95', values: v((i) => i.p95_ms), color: COLORS.p95 },
        { label: 'p99', values: v((i) => i.p99_ms), color: COLORS.p99 },
      ] }),
  ];
}
