// Loss curves as PNG pictures without a plotting library: lines drawn into an
// RGB buffer (log-scale y, light grid), encoded with the data module's PNG
// writer. Axis labels and values go in the report's text beside the picture.
import { io } from '@epg/torch';

import { encodePng } from './data/index.js';

export interface Series {
  /** x (step) and y (loss) values. */
  points: [number, number][];
  /** RGB colour. */
  color: [number, number, number];
}

function drawLine(
  px: Uint8Array,
  w: number,
  h: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  c: readonly number[],
): void {
  const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
  for (let i = 0; i <= steps; i++) {
    const x = Math.round(x0 + ((x1 - x0) * i) / steps);
    const y = Math.round(y0 + ((y1 - y0) * i) / steps);
    for (const [dx, dy] of [
      [0, 0],
      [1, 0],
      [0, 1],
    ] as const) {
      const xx = x + dx;
      const yy = y + dy;
      if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
      const o = (yy * w + xx) * 3;
      px[o] = c[0]!;
      px[o + 1] = c[1]!;
      px[o + 2] = c[2]!;
    }
  }
}

/** Writes a w×h PNG with each series as a polyline; y on a log scale when all values are positive. */
export function plotSeries(
  path: string,
  series: Series[],
  w = 640,
  h = 360,
): { yMin: number; yMax: number; log: boolean } {
  const px = new Uint8Array(w * h * 3).fill(255);
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const log = all.every(([, y]) => y > 0);
  const fy = (y: number): number => (log ? Math.log10(y) : y);
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => fy(y));
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  let [yMin, yMax] = [Math.min(...ys), Math.max(...ys)];
  if (yMax - yMin < 1e-9) {
    yMin -= 0.5;
    yMax += 0.5;
  }
  const m = 20;
  const X = (x: number): number => m + ((x - xMin) / Math.max(1e-9, xMax - xMin)) * (w - 2 * m);
  const Y = (y: number): number => h - m - ((fy(y) - yMin) / (yMax - yMin)) * (h - 2 * m);
  for (let i = 0; i <= 4; i++) {
    const gy = Math.round(m + (i * (h - 2 * m)) / 4);
    drawLine(px, w, h, m, gy, w - m, gy, [225, 225, 225]);
  }
  drawLine(px, w, h, m, h - m, w - m, h - m, [80, 80, 80]);
  drawLine(px, w, h, m, m, m, h - m, [80, 80, 80]);
  for (const s of series) {
    const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
    for (let i = 1; i < pts.length; i++)
      drawLine(px, w, h, X(pts[i - 1]![0]), Y(pts[i - 1]![1]), X(pts[i]![0]), Y(pts[i]![1]), s.color);
  }
  io.writeFileAtomic(path, encodePng(px, w, h, 3));
  return { yMin: log ? 10 ** yMin : yMin, yMax: log ? 10 ** yMax : yMax, log };
}

/** Smooths a series with an exponential moving average (for noisy losses). */
export function smooth(points: [number, number][], alpha = 0.1): [number, number][] {
  let s: number | null = null;
  return points.map(([x, y]) => {
    s = s === null ? y : s + alpha * (y - s);
    return [x, s];
  });
}
