// Charts for reports: Vega-Lite specs rendered to SVG by Vega in Node (no browser,
// no canvas), and to PNG by resvg. A chart states its axes, units and legend; the
// report's text does not have to.
import { io } from '@epg/torch';
import type { TopLevelSpec } from 'vega-lite';

// Vega, Vega-Lite and resvg load on the first chart, not with every epg command (~0.2 s).
type Renderers = {
  vega: typeof import('vega');
  compile: (typeof import('vega-lite'))['compile'];
  Resvg: (typeof import('@resvg/resvg-js'))['Resvg'];
};
let renderers: Promise<Renderers> | null = null;
const loadRenderers = (): Promise<Renderers> =>
  (renderers ??= Promise.all([import('vega'), import('vega-lite'), import('@resvg/resvg-js')]).then(
    ([vega, vegaLite, resvg]) => ({ vega, compile: vegaLite.compile, Resvg: resvg.Resvg }),
  ));

export interface LineSeries {
  /** Legend entry. */
  name: string;
  /** (x, y) points; non-finite y values are dropped (and, on a log axis, y ≤ 0). */
  points: readonly (readonly [number, number])[];
  /** Drawn dashed (e.g. a baseline or a reference level). */
  dashed?: boolean;
}

export interface Axis {
  /** Axis title, with its unit: "optimizer step", "wall-clock (min)", "FID-1000 proxy". */
  title: string;
  /** 'log', 'linear', or 'auto' (log when every value is positive and they span more than a factor 10). */
  scale?: 'log' | 'linear' | 'auto';
}

export interface LineChart {
  title: string;
  x: Axis;
  y: Axis;
  series: readonly LineSeries[];
  /** Plot area in CSS pixels (the PNG is drawn at twice that). */
  width?: number;
  height?: number;
  /** Draw a point at every datum (for sparse series such as FID evaluations). */
  points?: boolean;
}

// The font DejaVu Sans is Debian's fonts-dejavu-core (installed by scripts/setup.sh);
// resvg falls back to any system sans-serif font without it.
const FONT = 'DejaVu Sans';

function pickScale(axis: Axis, values: number[]): 'log' | 'linear' {
  const scale = axis.scale ?? 'auto';
  if (scale !== 'auto') return scale;
  if (values.length === 0 || values.some((v) => v <= 0)) return 'linear';
  return Math.max(...values) / Math.min(...values) > 10 ? 'log' : 'linear';
}

// A log scale has no zero to leave out; a linear one starts at the data, not at 0.
const scaleSpec = (type: 'log' | 'linear') =>
  type === 'log' ? ({ type, nice: true } as const) : ({ type, zero: false, nice: true } as const);

/** The Vega-Lite specification of a line chart (exported for tests and for users who render it elsewhere). */
export function lineChartSpec(chart: LineChart): TopLevelSpec {
  if (chart.series.length === 0) throw new Error(`lineChart "${chart.title}": no series to draw`);
  const finite = chart.series.flatMap((s) =>
    s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => ({ x, y, series: s.name })),
  );
  const xScale = pickScale(
    chart.x,
    finite.map((d) => d.x),
  );
  const yScale = pickScale(
    chart.y,
    finite.map((d) => d.y),
  );
  const values = finite.filter((d) => (xScale !== 'log' || d.x > 0) && (yScale !== 'log' || d.y > 0));
  if (values.length === 0)
    throw new Error(`lineChart "${chart.title}": every point is non-finite (or ≤ 0 on a log axis)`);
  const dashed = chart.series.filter((s) => s.dashed).map((s) => s.name);
  const names = chart.series.map((s) => s.name);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chart.title,
    width: chart.width ?? 560,
    height: chart.height ?? 280,
    data: { values },
    mark: { type: 'line', point: chart.points ?? false, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: chart.x.title, scale: scaleSpec(xScale) },
      y: { field: 'y', type: 'quantitative', title: chart.y.title, scale: scaleSpec(yScale) },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        sort: names,
        // Wide enough for an experiment arm's whole label (its table text); vega-lite cuts longer ones with '…'.
        legend: { orient: 'right', labelLimit: 560 },
      },
      strokeDash: {
        condition: { test: { field: 'series', oneOf: dashed }, value: [6, 3] },
        value: [1, 0],
      },
    },
    config: { font: FONT, background: 'white', view: { stroke: null } },
  };
}

/** The chart as an SVG document. */
export async function lineChartSvg(chart: LineChart): Promise<string> {
  const { vega, compile } = await loadRenderers();
  const view = new vega.View(vega.parse(compile(lineChartSpec(chart)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Writes the chart to `path`: an SVG when it ends in .svg, else a PNG at twice
 * the CSS size (atomically, so a reader never sees half a picture).
 */
export async function writeLineChart(path: string, chart: LineChart): Promise<void> {
  const svg = await lineChartSvg(chart);
  const { Resvg } = await loadRenderers();
  if (path.endsWith('.svg')) {
    io.writeFileAtomic(path, svg);
    return;
  }
  const png = new Resvg(svg, {
    font: { loadSystemFonts: true, defaultFontFamily: FONT },
    fitTo: { mode: 'zoom', value: 2 },
  })
    .render()
    .asPng();
  io.writeFileAtomic(path, png);
}

/** Smooths a series with an exponential moving average (for noisy losses). */
export function smooth(points: readonly (readonly [number, number])[], alpha = 0.1): [number, number][] {
  let s: number | null = null;
  return points.map(([x, y]) => {
    s = s === null ? y : s + alpha * (y - s);
    return [x, s];
  });
}
