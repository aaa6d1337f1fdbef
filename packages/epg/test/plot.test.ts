// Report charts: the Vega-Lite spec carries the axes, units and legend asked for;
// the SVG holds them as text; the PNG is a real picture of the right size with
// lines drawn in the series' colours; bad input is refused with its reason.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { PNG } from 'pngjs';

import { lineChartSpec, lineChartSvg, smooth, writeLineChart, type LineChart } from '../src/plot.js';

const dir = mkdtempSync(join(tmpdir(), 'epg-plot-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const decaying: LineChart = {
  title: 'dm: training loss',
  x: { title: 'optimizer step' },
  y: { title: 'loss' },
  series: [
    { name: 'loss', points: Array.from({ length: 50 }, (_, i) => [i * 10, 100 * Math.exp(-i / 8)] as const) },
    {
      name: 'baseline',
      points: [
        [0, 50],
        [490, 2],
      ],
      dashed: true,
    },
  ],
};

describe('lineChartSpec', () => {
  test('axis titles, legend order and dashing come from the chart', () => {
    const spec = lineChartSpec(decaying) as unknown as {
      encoding: {
        x: { title: string; scale: { type: string } };
        y: { title: string; scale: { type: string } };
        color: { sort: string[] };
        strokeDash: { condition: { test: { oneOf: string[] } } };
      };
      data: { values: { x: number; y: number; series: string }[] };
    };
    assert.equal(spec.encoding.x.title, 'optimizer step');
    assert.equal(spec.encoding.y.title, 'loss');
    assert.deepEqual(spec.encoding.color.sort, ['loss', 'baseline']);
    assert.deepEqual(spec.encoding.strokeDash.condition.test.oneOf, ['baseline']);
    assert.equal(spec.data.values.length, 52);
  });

  test('auto scale: log when positive over more than a decade, linear otherwise; explicit scales win', () => {
    const yScale = (c: LineChart): string =>
      (lineChartSpec(c) as unknown as { encoding: { y: { scale: { type: string } } } }).encoding.y.scale.type;
    assert.equal(yScale(decaying), 'log');
    const flat: LineChart = {
      ...decaying,
      series: [
        {
          name: 'a',
          points: [
            [0, 2],
            [1, 3],
          ],
        },
      ],
    };
    assert.equal(yScale(flat), 'linear');
    const negative: LineChart = {
      ...decaying,
      series: [
        {
          name: 'a',
          points: [
            [0, -1],
            [1, 300],
          ],
        },
      ],
    };
    assert.equal(yScale(negative), 'linear');
    assert.equal(yScale({ ...flat, y: { title: 'loss', scale: 'log' } }), 'log');
  });

  test('non-finite points are dropped; a chart with nothing to draw is refused', () => {
    const spec = lineChartSpec({
      ...decaying,
      series: [
        {
          name: 'a',
          points: [
            [0, 1],
            [1, Number.NaN],
            [2, Number.POSITIVE_INFINITY],
            [3, 2],
          ],
        },
      ],
    }) as unknown as { data: { values: unknown[] } };
    assert.equal(spec.data.values.length, 2);
    assert.throws(() => lineChartSpec({ ...decaying, series: [] }), /no series/);
    assert.throws(
      () => lineChartSpec({ ...decaying, series: [{ name: 'a', points: [[0, Number.NaN]] }] }),
      /every point is non-finite/,
    );
  });
});

describe('rendering', () => {
  test('the SVG holds the title, both axis titles, tick values and the legend', async () => {
    const svg = await lineChartSvg(decaying);
    assert.match(svg, /^<svg/);
    for (const text of ['dm: training loss', 'optimizer step', 'loss', 'baseline', '100', '400'])
      assert.ok(svg.includes(`>${text}<`), `SVG lacks the text "${text}"`);
  });

  test('a PNG at twice the CSS size, with the first series drawn in its colour; nothing else left behind', async () => {
    const path = join(dir, 'chart.png');
    await writeLineChart(path, decaying);
    const png = PNG.sync.read(readFileSync(path));
    // The plot area is 560×280; title, axes and legend add to it.
    assert.ok(png.width > 2 * 560 && png.width < 2 * 900, `width ${png.width}`);
    assert.ok(png.height > 2 * 280 && png.height < 2 * 450, `height ${png.height}`);
    // Vega's first categorical colour is #4c78a8; count pixels close to it.
    let blue = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      const [r, g, b] = [png.data[i]!, png.data[i + 1]!, png.data[i + 2]!];
      if (Math.abs(r - 0x4c) < 20 && Math.abs(g - 0x78) < 20 && Math.abs(b - 0xa8) < 20) blue++;
    }
    assert.ok(blue > 500, `only ${blue} pixels of the first series' colour`);
    assert.deepEqual(readdirSync(dir).sort(), ['chart.png']);
  });

  test('.svg paths get the SVG itself', async () => {
    const path = join(dir, 'chart.svg');
    await writeLineChart(path, decaying);
    assert.match(readFileSync(path, 'utf8'), /^<svg/);
  });
});

test('smooth: an exponential moving average that starts at the first value', () => {
  assert.deepEqual(
    smooth(
      [
        [0, 10],
        [1, 0],
        [2, 0],
      ],
      0.5,
    ),
    [
      [0, 10],
      [1, 5],
      [2, 2.5],
    ],
  );
});
