/**
 * The runner's HTML reports: the timeline's columns, boxes, fault bands and truncation; the
 * plot's two charts; escaping of everything that comes from the history; determinism; and
 * that a 100k-event history renders in reasonable time.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type HistoryEvent, toEvent } from '../../jepsen-like/history.js';
import {
  type FaultWindow,
  type ReportInput,
  renderPlot,
  renderTimeline,
} from '../../jepsen-like/runner/report.js';

const MS = 1_000_000;
const EVIL = '<script>alert(1)</script>';

/** Builder hands out increasing indexes; times are given in ms. */
function builder() {
  const events: HistoryEvent[] = [];
  const push = (tMs: number, process: number | string, type: string, f: string, value: unknown, more = {}) =>
    events.push(toEvent({ index: events.length, time: tMs * MS, process, type, f, value, ...more }, 0));
  return { events, push };
}

/** sample: processes 0, 1, 2 and "10"; one op of each outcome; two fault windows. */
function sample(): ReportInput {
  const { events, push } = builder();
  push(0, 0, 'invoke', 'write', 1, { key: 'a' });
  push(1, 1, 'invoke', 'read', null, { key: EVIL });
  push(2, 'nemesis', 'info', 'start-partition', 'n1 | n2 n3');
  push(5, 0, 'ok', 'write', 1, { key: 'a' });
  push(6, 1, 'fail', 'read', null, { key: EVIL, error: 'UNAVAILABLE' });
  push(7, 2, 'invoke', 'cas', [1, 2], { key: 'a' });
  push(8, '10', 'invoke', 'write', '"><img src=x>', { key: 'b' });
  push(20, 2, 'info', 'cas', [1, 2], { key: 'a' });
  push(21, 0, 'invoke', 'read', null, { key: 'a' });
  push(24, 0, 'ok', 'read', { v: EVIL }, { key: 'a' });
  push(30, 'nemesis', 'info', 'stop-partition', null);
  // Process "10"'s write never completes.
  const faults: FaultWindow[] = [
    { name: 'partition', detail: 'n1 | n2 n3 <b>', startNs: 2 * MS, endNs: 30 * MS },
    { name: 'kill', detail: 'n2', startNs: 12 * MS, endNs: 12 * MS },
  ];
  return { title: `test <${EVIL}>`, events, faults, verdict: 'INVALID', notes: [`note ${EVIL}`] };
}

/** boxes lists the timeline's op boxes: their class and hover text (unescaped enough to read). */
function boxes(html: string): { cls: string; title: string }[] {
  return [...html.matchAll(/<div class="op (\w+)" style="[^"]*" title="([^"]*)">/g)].map((m) => ({
    cls: m[1]!,
    title: m[2]!,
  }));
}

describe('renderTimeline', () => {
  it('draws one column per client process, in numeric order, and no nemesis column', () => {
    const html = renderTimeline(sample());
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html.match(/<div class="col"/g)).toHaveLength(4);
    const heads = [...html.matchAll(/<div class="head"[^>]*>([^<]*)<\/div>/g)].map((m) => m[1]);
    expect(heads).toEqual(['0', '1', '2', '10']);
    expect(html).not.toContain('title="process nemesis"');
  });

  it("colours each op's box by its outcome and puts its details in the hover text", () => {
    const html = renderTimeline(sample());
    const bs = boxes(html);
    expect(bs.map((b) => b.cls)).toEqual(['ok', 'ok', 'fail', 'info', 'open']);
    const byIndex = (i: string) => bs.find((b) => b.title.includes(`index: ${i}`))!;
    expect(byIndex('0 → 3').cls).toBe('ok');
    expect(byIndex('0 → 3').title).toContain('latency: 5.000 ms');
    expect(byIndex('0 → 3').title).toContain('invoke: 1');
    expect(byIndex('1 → 4').cls).toBe('fail');
    expect(byIndex('1 → 4').title).toContain('error: &quot;UNAVAILABLE&quot;');
    expect(byIndex('5 → 7').cls).toBe('info');
    expect(byIndex('5 → 7').title).toContain('cas a');
    expect(byIndex('5 → 7').title).toContain('invoke: [1,2]');
    expect(byIndex('6').cls).toBe('open');
    expect(byIndex('6').title).toContain('never completed');
    // The colours behind the classes.
    expect(html).toMatch(/\.op\.ok\{background:#9fdf9f/);
    expect(html).toMatch(/\.op\.fail\{background:#f6b0b8/);
    expect(html).toMatch(/\.op\.info\{background:#ffd27a/);
    expect(html).toMatch(/\.op\.open\{background:#d6d6d6/);
  });

  it('shades the fault windows with their labels, and shows title, verdict, notes and a legend', () => {
    const html = renderTimeline(sample());
    expect(html.match(/<div class="fault[ "]/g)).toHaveLength(2);
    expect(html).toContain('<div class="fault instant"');
    expect(html).toContain('partition: n1 | n2 n3 &lt;b&gt;</div>');
    expect(html).toContain('kill: n2</div>');
    expect(html).toContain('class="v-invalid">INVALID</b>');
    expect(html).toContain('<li>note &lt;script&gt;');
    expect(html).toContain('never completed</span>');
  });

  it('escapes everything from the history: no raw markup gets through', () => {
    for (const html of [renderTimeline(sample()), renderPlot(sample())]) {
      expect(html).not.toContain('<script');
      expect(html).not.toContain('<img');
      expect(html).not.toContain('<b>');
      expect(html).toContain('&lt;script&gt;');
    }
  });

  it('escapes arbitrary strings in every field (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), (a, b, c) => {
        const { events, push } = builder();
        const s = `<img ${a}"x="${b}'y='${c}`;
        push(0, s, 'invoke', s, s, { key: s });
        push(1, s, 'ok', s, [s], { key: s, error: s });
        push(2, 3, 'invoke', 'read', s, { key: s });
        const input: ReportInput = {
          title: s,
          events,
          faults: [{ name: s, detail: s, startNs: 0, endNs: MS }],
          verdict: s,
          notes: [s],
        };
        for (const html of [renderTimeline(input), renderPlot(input)]) {
          expect(html).not.toContain('<img');
          expect(html).not.toContain('"x="');
          expect(html).not.toContain("'y='");
        }
      }),
      { numRuns: 40 },
    );
  });

  it('past maxOps draws the first ops only and says how many were left out', () => {
    const html = renderTimeline(sample(), { maxOps: 2 });
    expect(boxes(html)).toHaveLength(2);
    expect(html).toContain('Showing the first 2 of 5 operations');
    expect(html).toContain('3 operations were left out');
    expect(renderTimeline(sample())).not.toContain('left out');
    expect(() => renderTimeline(sample(), { maxOps: -1 })).toThrow(RangeError);
  });

  it('is deterministic and renders an empty history', () => {
    expect(renderTimeline(sample())).toBe(renderTimeline(sample()));
    const empty = renderTimeline({ title: 'empty', events: [], faults: [] });
    expect(empty).toContain('No client operations');
    expect(renderPlot({ title: 'empty', events: [], faults: [] })).toContain('<svg');
  });
});

describe('renderPlot', () => {
  it('draws two charts with axes, points, throughput lines and shaded faults', () => {
    const html = renderPlot(sample());
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html.match(/<rect class="fault"/g)).toHaveLength(4);
    expect(html).toContain('time (s since the first event)');
    expect(html).toContain('latency (ms, log scale)');
    expect(html).toContain('operations per second');
    expect(html).toContain('<path class="pts ok"');
    expect(html).toContain('<path class="pts fail"');
    expect(html).toContain('<path class="pts info"');
    expect(html).toContain('write ok/s');
    expect(html).toContain('read ok/s');
    expect(html).toContain('fail/s');
    expect(html).toContain('>partition: n1 | n2 n3 &lt;b&gt;</text>');
    expect(renderPlot(sample())).toBe(html);
  });
});

describe('a large history', () => {
  it('renders 100k events quickly, within the height cap, thinned where needed', () => {
    // 10 processes, each running its ops back to back; merged in time order.
    const raw: { time: number; process: number; type: string; f: string; key: string; value: number }[] = [];
    const outcomes = ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'fail', 'info'];
    let t = 0;
    for (let p = 0; p < 10; p++) {
      let clock = p * 0.3;
      for (let i = 0; i < 5000; i++) {
        const f = i % 3 === 0 ? 'write' : 'read';
        const key = `k${i % 7}`;
        raw.push({ time: clock * MS, process: p, type: 'invoke', f, key, value: i });
        clock += 1 + ((i * 7 + p) % 13) / 4;
        raw.push({ time: clock * MS, process: p, type: outcomes[(i + p) % 8]!, f, key, value: i });
        clock += 0.5;
      }
      t = Math.max(t, clock);
    }
    raw.sort((a, b) => a.time - b.time || a.process - b.process);
    const events = raw.map((r, index) => toEvent({ index, ...r }, 0));
    const faults: FaultWindow[] = [];
    for (let s = 1000; s < t; s += 5000)
      faults.push({ name: 'partition', startNs: s * MS, endNs: (s + 2000) * MS });
    const input: ReportInput = { title: 'big', events, faults, verdict: 'valid' };
    const start = performance.now();
    const timeline = renderTimeline(input);
    const plot = renderPlot(input);
    const elapsedMs = performance.now() - start;
    expect(elapsedMs).toBeLessThan(5000);
    expect(boxes(timeline)).toHaveLength(20_000);
    expect(timeline).toContain('Showing the first 20000 of 50000 operations');
    const height = Number(/<div class="tl" style="width:\d+px;height:(\d+)px">/.exec(timeline)![1]);
    expect(height).toBeLessThanOrEqual(20_100);
    expect(plot.match(/<svg /g)).toHaveLength(2);
    expect(plot.match(/h0/g)!.length).toBeLessThanOrEqual(50_000);
    expect(plot).toMatch(/showing \d+ of 50000 points/);
    expect(plot.length).toBeLessThan(5_000_000);
  });
});
