// Drives Debian's Chromium (/usr/bin/chromium) with playwright-core against
// logmon's dashboard, for the end-to-end test (tests/tests/dashboard.rs) and
// the bench (tests/benches/dashboard.rs). Prints one JSON object on stdout;
// exits 1 with the reason on stderr when a check fails.
//
//   node dashboard.mjs check --url URL [--rule NAME] --screenshot FILE [--timeout S]
//       waits until the charts hold data points, a 10-s statistics block is
//       shown (and, with --rule, the alert NAME firing), then saves a screenshot
//   node dashboard.mjs unauthorized --url URL [--timeout S]
//       waits until the page says its API requests were refused (401)
//   node dashboard.mjs measure --url URL [--runs N] [--data] [--screenshot FILE]
//       loads the page N times in fresh contexts: time to first render (from
//       navigation start, the app's performance marks), the JS heap after a
//       garbage collection (CDP Performance.getMetrics), DOM nodes, the
//       longest task, and the time a range switch takes

import { chromium } from 'playwright-core';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
// As root in a closed network: no sandbox, nothing that calls home.
const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

function fail(message) {
  process.stderr.write(`dashboard.mjs: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  const opts = { mode, timeout: 60, runs: 3, data: false };
  for (let i = 0; i < rest.length; i++) {
    const name = rest[i].replace(/^--/, '');
    if (name === 'data') { opts.data = true; continue; }
    if (i + 1 >= rest.length) fail(`--${name} needs a value`);
    opts[name] = rest[++i];
  }
  opts.timeout = Number(opts.timeout) * 1000;
  opts.runs = Number(opts.runs);
  if (!opts.url) fail('--url is required');
  return opts;
}

async function launch() {
  if (!existsSync(CHROMIUM)) {
    fail(`${CHROMIUM} not found: install Debian's chromium (scripts/setup.sh --browser)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/** A fresh page that records page errors, console errors and long tasks. */
async function openPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location().url || 'no url'})`);
  });
  await page.addInitScript(() => {
    window.__longtasks = [];
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.__longtasks.push(e.duration);
      }).observe({ type: 'longtask', buffered: true });
    } catch (_) { /* no long task timing */ }
  });
  return { context, page, errors };
}

async function screenshot(page, file) {
  mkdirSync(dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: true });
}

/** What the page shows, for the test's assertions. */
function pageSummary() {
  const L = window.__logmon;
  const c = L.charts;
  return {
    points: L.points(),
    nonZero: L.nonZero(),
    series: c.requests ? c.requests.series.length - 1 : 0,
    statusPoints: c.status ? c.status.data[0].length : 0,
    bytesPoints: c.bytes ? c.bytes.data[0].length : 0,
    activeText: document.getElementById('active-alerts').textContent.replace(/\s+/g, ' ').trim(),
    historyRows: document.querySelectorAll('#history tr.row').length,
    historyEntries: L.state.history.length,
    historyText: document.getElementById('history').textContent.replace(/\s+/g, ' ').trim().slice(0, 2000),
    rulesText: document.getElementById('rules').textContent.replace(/\s+/g, ' ').trim(),
    agentsText: document.getElementById('agents').textContent.replace(/\s+/g, ' ').trim(),
    statsText: document.getElementById('stats').textContent.replace(/\s+/g, ' ').trim(),
    error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
    conn: document.getElementById('conn').textContent,
    marks: L.marks(),
    // The last 300 points of the total requests series, [t, req/s].
    totals: c.requests
      ? c.requests.data[0].slice(-300).map((t, i, ts) => [t, c.requests.data[1][c.requests.data[0].length - ts.length + i]])
      : [],
  };
}

async function check(browser, opts) {
  if (!opts.screenshot) fail('check needs --screenshot');
  const { page, errors } = await openPage(browser);
  await page.goto(opts.url);
  const waitFor = async (what, fn, arg) => {
    try {
      await page.waitForFunction(fn, arg, { timeout: opts.timeout, polling: 100 });
    } catch (e) {
      await screenshot(page, opts.screenshot).catch(() => {});
      const seen = await page.evaluate(pageSummary).catch((err) => String(err));
      fail(`${what} within ${opts.timeout / 1000} s; the page shows ${JSON.stringify(seen)}; ${errors.join('; ')}`);
    }
  };
  await waitFor('no chart data points',
    () => window.__logmon && window.__logmon.nonZero() > 0 &&
      window.__logmon.charts.status.data[0].length > 0 && window.__logmon.charts.bytes.data[0].length > 0);
  await waitFor('no 10-s statistics block', () => document.querySelector('#stats .kpis') !== null);
  if (opts.rule) {
    await waitFor(`no firing alert of ${opts.rule}`, (rule) => {
      const text = document.getElementById('active-alerts').textContent;
      return text.includes(rule) && text.includes('firing');
    }, opts.rule);
  }
  // Let the polled panels (rules, agents) and the next live second land.
  await page.waitForTimeout(1500);
  await screenshot(page, opts.screenshot);
  const summary = await page.evaluate(pageSummary);
  summary.errors = errors;
  return summary;
}

async function unauthorized(browser, opts) {
  const { page, errors } = await openPage(browser);
  await page.goto(opts.url);
  try {
    await page.waitForFunction(() => {
      const e = document.getElementById('error');
      return !e.hidden && e.textContent.includes('401');
    }, null, { timeout: opts.timeout, polling: 100 });
  } catch (e) {
    fail(`the page never said 401: ${JSON.stringify(await page.evaluate(pageSummary))}`);
  }
  const summary = await page.evaluate(pageSummary);
  // Failed requests are logged as console errors by the browser itself.
  summary.errors = errors.filter((e) => !e.includes('401'));
  return summary;
}

async function measureOnce(browser, opts, shot) {
  const { context, page, errors } = await openPage(browser);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.goto(opts.url);
  const want = opts.data ? ['first-render', 'charts-data'] : ['first-render'];
  await page.waitForFunction((names) => {
    const L = window.__logmon;
    return L && names.every((n) => L.marks().some((m) => m.name === n));
  }, want, { timeout: opts.timeout, polling: 20 });
  const marks = await page.evaluate(() => Object.fromEntries(
    window.__logmon.marks().map((m) => [m.name, m.at])));
  // Let the first polls and live seconds settle, then weigh the heap.
  await page.waitForTimeout(1000);
  await cdp.send('HeapProfiler.collectGarbage');
  const metrics = Object.fromEntries(
    (await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  const shown = await page.evaluate((firstRender) => ({
    // When the last API answer of the first render arrived: the rest of
    // first render is the page's own work.
    apiMs: Math.max(0, ...performance.getEntriesByType('resource')
      .filter((e) => e.name.includes('/api/') && !e.name.includes('/api/stream'))
      .map((e) => e.responseEnd)
      .filter((end) => end <= firstRender)),
    historyRows: document.querySelectorAll('#history tr.row').length,
    historyEntries: window.__logmon.state.history.length,
    series: window.__logmon.charts.requests ? window.__logmon.charts.requests.series.length - 1 : 0,
    points: window.__logmon.points(),
    longestTask: Math.max(0, ...window.__longtasks),
  }), marks['first-render']);
  // Responsiveness: a click on "1 h" until the charts show that range.
  const switched = await page.evaluate(() => new Promise((resolve) => {
    const started = performance.now();
    document.querySelector('button[data-range="3600"]').click();
    const poll = () => {
      const s = window.__logmon.state.series;
      if (s && s.range === 3600) {
        requestAnimationFrame(() => resolve(performance.now() - started));
      } else {
        setTimeout(poll, 5);
      }
    };
    poll();
  }));
  if (shot) await screenshot(page, shot);
  await context.close();
  return {
    firstRenderMs: marks['first-render'],
    chartsMs: marks['charts-drawn'],
    chartsDataMs: marks['charts-data'] ?? null,
    heapUsedBytes: metrics.JSHeapUsedSize,
    heapTotalBytes: metrics.JSHeapTotalSize,
    domNodes: metrics.Nodes,
    rangeSwitchMs: switched,
    errors,
    ...shown,
  };
}

async function measure(browser, opts) {
  const runs = [];
  for (let i = 0; i < opts.runs; i++) {
    runs.push(await measureOnce(browser, opts, i === opts.runs - 1 ? opts.screenshot : null));
  }
  return { runs };
}

const opts = parseArgs(process.argv.slice(2));
const modes = { check, unauthorized, measure };
if (!modes[opts.mode]) fail(`unknown mode ${opts.mode}: check, unauthorized or measure`);
const browser = await launch();
try {
  const result = await modes[opts.mode](browser, opts);
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await browser.close();
}
