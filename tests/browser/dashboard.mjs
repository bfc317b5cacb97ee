// Drives Debian's Chromium (/usr/bin/chromium) with playwright-core against
// logmon's dashboard, for the end-to-end test (tests/tests/dashboard.rs) and
// the bench (tests/benches/dashboard.rs). Prints one JSON object on stdout;
// exits 1 with the reason on stderr when a check fails.
//
//   node dashboard.mjs check --url URL [--rule NAME] [--live-seconds N] --screenshot FILE [--timeout S]
//       waits until the charts hold data points, a 10-s statistics block is
//       shown, with --rule until a firing (not pending) alert card of the rule
//       NAME is on the page, with --live-seconds until the page holds N live
//       seconds past the series it fetched; then saves a screenshot. With
//       --rule it polls api/alerts meanwhile and reports when the card
//       appeared, against the transition's event time and against the moment
//       api/alerts first listed it
//   node dashboard.mjs untrusted --url URL --section S --client C --screenshot FILE [--timeout S]
//       waits until the statistics block lists the section S and the client
//       C and alert cards keyed S and C fire, then reports how the page shows
//       them (their text, whether markup from them made it into the DOM or ran)
//   node dashboard.mjs hidden --url URL [--timeout S]
//       loads the page, plays a hidden tab (no animation frames,
//       visibilityState "hidden") that a range of live seconds and more
//       reach, reports how many waited for a frame, then shows the tab again
//       and waits until the series was fetched again and goes on live
//   node dashboard.mjs gap --url URL [--timeout S]
//       delivers a second over the stream that skips two: reports whether
//       the page fetched the series again (and showed none of it)
//   node dashboard.mjs race --url URL [--timeout S]
//       holds the answers of api/alerts and api/rules back while a
//       transition arrives over the stream, then lets the older answers in:
//       reports whether the page still shows the transition
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

/**
 * Test instruments, in the page before its own script (not for `measure`,
 * whose figures they would weigh on):
 * - a tab that can play hidden: `__hide()` holds animation frames back and
 *   says "hidden", `__show()` says "visible" (visibilitychange) and runs them;
 * - `__eventSource`, the page's live stream (to deliver events to as the
 *   collector would), and `__stream`, what came over it: seconds, the first
 *   and last, `gaps` ([before, after] where they skip some), opens (more than
 *   one: it reconnected), errors, resets;
 * - `__alertCards`: when each alert card (rule, key, state) was first in
 *   the DOM, wall-clock ms, before it is painted.
 */
function instruments() {
  let hidden = false;
  const held = [];
  const raf = window.requestAnimationFrame.bind(window);
  // Frames asked for before `__hide()` are held back too.
  const frame = (cb) => raf((ts) => (hidden ? held.push(cb) : cb(ts)));
  window.requestAnimationFrame = (cb) => {
    if (!hidden) return frame(cb);
    held.push(cb);
    return 1e9 + held.length;
  };
  Object.defineProperty(document, 'visibilityState', { get: () => (hidden ? 'hidden' : 'visible') });
  Object.defineProperty(document, 'hidden', { get: () => hidden });
  window.__hide = () => {
    hidden = true;
    document.dispatchEvent(new Event('visibilitychange'));
  };
  window.__show = () => {
    hidden = false;
    document.dispatchEvent(new Event('visibilitychange'));
    for (const cb of held.splice(0)) frame(cb);
  };

  window.__stream = { opens: 0, errors: 0, resets: 0, seconds: 0, first: null, last: null, gaps: [] };
  const Source = window.EventSource;
  window.EventSource = class extends Source {
    constructor(...args) {
      super(...args);
      window.__eventSource = this;
      const st = window.__stream;
      this.addEventListener('open', () => { st.opens++; });
      this.addEventListener('error', () => { st.errors++; });
      this.addEventListener('reset', () => { st.resets++; });
      this.addEventListener('second', (e) => {
        const t = JSON.parse(e.data).t;
        if (st.last != null && t !== st.last + 1 && st.gaps.length < 20) st.gaps.push([st.last, t]);
        st.first ??= t;
        st.last = t;
        st.seconds++;
      });
    }
  };

  window.__alertCards = [];
  const seen = new Set();
  new MutationObserver(() => {
    const box = document.getElementById('active-alerts');
    if (!box) return;
    for (const card of box.querySelectorAll('.alert-card')) {
      const text = (sel) => (card.querySelector(sel) || { textContent: '' }).textContent.trim();
      const shown = {
        rule: text('.rule'),
        key: text('.key'),
        state: card.classList.contains('pending') ? 'pending' : text('.badge'),
      };
      const id = JSON.stringify(shown);
      if (seen.has(id)) continue;
      seen.add(id);
      window.__alertCards.push({ ...shown, shownMs: Date.now() });
    }
  }).observe(document, { childList: true, subtree: true });
}

/**
 * A fresh page that records page errors, console errors, Content-Security-
 * Policy violations (`__csp`) and long tasks, with the test `instruments`
 * unless `bare`.
 */
async function openPage(browser, bare = false) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  if (!bare) await context.addInitScript(instruments);
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
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
    });
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
    csp: window.__csp,
    stream: window.__stream,
    marks: L.marks(),
    resolution: L.state.series ? L.state.series.resolution : null,
    // The newest closed second of the series fetched, and of the page.
    fetchedLast: isFinite(L.state.liveAfter) ? L.state.liveAfter : null,
    newest: L.state.newest,
    // The last 300 points of the requests and bytes charts, [t, req/s, bytes/s].
    totals: c.requests
      ? c.requests.data[0].slice(-300).map((t, i, ts) => {
        const at = c.requests.data[0].length - ts.length + i;
        return [t, c.requests.data[1][at], c.bytes.data[1][at]];
      })
      : [],
  };
}

/** `path` (relative) next to the page at `url`, with the page's `?token=`. */
function apiUrl(url, path) {
  const page = new URL(url);
  const api = new URL(path, page);
  const token = page.searchParams.get('token');
  if (token) api.searchParams.set('token', token);
  return api.href;
}

/**
 * Polls api/alerts every 50 ms until it lists a firing transition of `rule`:
 * that transition and when its answer arrived (wall-clock ms). `stop()` ends
 * the polling.
 */
function watchApiAlerts(url, rule, timeoutMs) {
  let stopped = false;
  const deadline = Date.now() + timeoutMs;
  const found = (async () => {
    while (!stopped && Date.now() < deadline) {
      try {
        const res = await fetch(apiUrl(url, 'api/alerts?limit=50'), { cache: 'no-store' });
        const listedMs = Date.now();
        const body = await res.json();
        const t = (body.history || []).find((h) => h.rule === rule && h.state === 'firing');
        if (t) return { transition: { rule: t.rule, key: t.key, state: t.state, at: t.at }, listedMs };
      } catch (_) { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    return null;
  })();
  return { found, stop: () => { stopped = true; } };
}

/** `waitFor(what, fn, arg)`: waits until `fn(arg)` is true on the page, or fails saying `what`. */
function waiter(page, errors, opts) {
  return async (what, fn, arg) => {
    try {
      await page.waitForFunction(fn, arg, { timeout: opts.timeout, polling: 100 });
    } catch (e) {
      await screenshot(page, opts.screenshot).catch(() => {});
      const seen = await page.evaluate(pageSummary).catch((err) => String(err));
      fail(`${what} within ${opts.timeout / 1000} s; the page shows ${JSON.stringify(seen)}; ${errors.join('; ')}`);
    }
  };
}

/**
 * A fresh page at --url once it rendered first (with `traffic`, once its
 * charts hold some too): the page, its errors and its `waitFor`.
 */
async function loadedPage(browser, opts, traffic) {
  const { page, errors } = await openPage(browser);
  await page.goto(opts.url);
  const waitFor = waiter(page, errors, opts);
  await waitFor(traffic ? 'no chart data points' : 'no first render', (withTraffic) =>
    window.__logmon && window.__logmon.marks().some((m) => m.name === 'first-render') &&
    (!withTraffic || window.__logmon.nonZero() > 0), traffic);
  return { page, errors, waitFor };
}

/** What the page shows (`pageSummary`), with `extra` and the errors it logged. */
async function summarize(page, errors, extra) {
  return { ...(await page.evaluate(pageSummary)), ...extra, errors };
}

/** The text of each element matching `selector` on the page. */
function texts(page, selector) {
  return page.evaluate((sel) => [...document.querySelectorAll(sel)]
    .map((e) => e.textContent.replace(/\s+/g, ' ').trim()), selector);
}

async function check(browser, opts) {
  if (!opts.screenshot) fail('check needs --screenshot');
  const { page, errors } = await openPage(browser);
  // From before the page loads: the moment api/alerts first lists the rule.
  const api = opts.rule ? watchApiAlerts(opts.url, opts.rule, opts.timeout) : null;
  const openedMs = Date.now();
  await page.goto(opts.url);
  const waitFor = waiter(page, errors, opts);
  await waitFor('no chart data points',
    () => window.__logmon && window.__logmon.nonZero() > 0 &&
      window.__logmon.charts.status.data[0].length > 0 && window.__logmon.charts.bytes.data[0].length > 0);
  await waitFor('no 10-s statistics block', () => document.querySelector('#stats .kpis') !== null);
  let alert = null;
  if (opts.rule) {
    const firing = (rule) => window.__alertCards.find((c) => c.rule === rule && c.state === 'firing');
    await waitFor(`no firing alert card of ${opts.rule}`, firing, opts.rule);
    const card = await page.evaluate(firing, opts.rule);
    const listed = await api.found;
    api.stop();
    if (!listed) fail(`api/alerts never listed a firing transition of ${opts.rule}`);
    const loaded = await page.evaluate(() => {
      const m = window.__logmon.marks().find((x) => x.name === 'first-render');
      return m ? performance.timeOrigin + m.at : null;
    });
    alert = {
      card,
      transition: listed.transition,
      listedMs: listed.listedMs,
      // From the start of the transition's second (event time, unix s).
      shownAfterEventMs: card.shownMs - listed.transition.at * 1000,
      listedAfterEventMs: listed.listedMs - listed.transition.at * 1000,
      // Negative: the page showed it before a 50-ms poll of api/alerts saw it.
      shownAfterListedMs: card.shownMs - listed.listedMs,
      // Whether the page was up before the alert was listed (else the delay
      // is the page's own loading).
      pageLoadedFirst: loaded != null && loaded < listed.listedMs,
      pageOpenedMs: openedMs,
    };
  }
  if (opts['live-seconds']) {
    await waitFor(`fewer than ${opts['live-seconds']} live seconds after the series`, (n) => {
      const s = window.__logmon.state;
      return s.newest != null && s.newest - s.liveAfter >= n;
    }, Number(opts['live-seconds']));
  }
  // Let the polled panels (rules, agents) and the next live second land.
  await page.waitForTimeout(1500);
  await screenshot(page, opts.screenshot);
  return summarize(page, errors, { alert });
}

async function untrusted(browser, opts) {
  if (!opts.screenshot || !opts.section || !opts.client) fail('untrusted needs --section, --client and --screenshot');
  const { page, errors } = await openPage(browser);
  await page.goto(opts.url);
  const waitFor = waiter(page, errors, opts);
  // Markup that ran ends the wait at once: the caller reports it.
  await waitFor('the section and the client are not in the statistics block', ([section, client]) => {
    const texts = [...document.querySelectorAll('#stats td.mono')].map((e) => e.textContent);
    return window.__xss !== undefined || (texts.includes(section) && texts.includes(client));
  }, [opts.section, opts.client]);
  await waitFor('no firing alert cards keyed by the section and the client', ([section, client]) => {
    const keys = window.__alertCards.filter((c) => c.state === 'firing').map((c) => c.key);
    return window.__xss !== undefined || (keys.includes(section) && keys.includes(client));
  }, [opts.section, opts.client]);
  // Let the polled panels, the history and the next live seconds land.
  await page.waitForTimeout(1500);
  await screenshot(page, opts.screenshot);
  return summarize(page, errors, {
    ...(await page.evaluate(() => ({
      // Set only if markup from the log ran.
      xss: window.__xss === undefined ? null : String(window.__xss),
      // Elements that only markup from the log could have made.
      injected: document.querySelectorAll('main img, main script, main svg, header img').length,
      statsHtml: document.getElementById('stats').innerHTML,
      cards: window.__alertCards,
    }))),
    statsCells: await texts(page, '#stats td.mono'),
    historyKeys: await texts(page, '#history tr.row td:nth-child(4)'),
    legend: await texts(page, '#chart-requests .u-legend .u-label'),
  });
}

async function hidden(browser, opts) {
  const { page, errors, waitFor } = await loadedPage(browser, opts, true);
  const whileHidden = await page.evaluate(() => {
    const s = window.__logmon.state;
    const cap = Math.ceil(s.series.range / s.series.resolution);
    window.__hide();
    // A range and a hundred seconds more arrive while no frame comes, as
    // over 15 minutes in a background tab (synthetic: a live collector
    // cannot close that many seconds at once), each with a section the
    // collector never saw.
    const from = s.newest + 1000;
    let max = s.pending.length;
    for (let t = from; t < from + cap + 100; t++) {
      window.__eventSource.dispatchEvent(new MessageEvent('second', {
        data: JSON.stringify({
          t, total: 1, bytes: 100, status: { '2xx': 1 }, sections: { '/synthetic': 1 }, other: 0,
        }),
      }));
      max = Math.max(max, s.pending.length);
    }
    return { cap, max, pendingAfter: s.pending.length, stale: s.stale, newestHidden: s.newest };
  });
  // Real seconds go on arriving while hidden; the page keeps none.
  await page.waitForTimeout(1500);
  whileHidden.pendingLater = await page.evaluate(() => window.__logmon.state.pending.length);
  await page.evaluate(() => window.__show());
  await waitFor('the series was not fetched again and extended once shown', (hiddenAt) => {
    const s = window.__logmon.state;
    return !s.stale && !s.fetching && s.newest > hiddenAt + 1 && s.newest > s.liveAfter;
  }, whileHidden.newestHidden);
  return summarize(page, errors, {
    hidden: whileHidden,
    legend: await texts(page, '#chart-requests .u-legend .u-label'),
  });
}

async function gap(browser, opts) {
  const { page, errors, waitFor } = await loadedPage(browser, opts, true);
  let seriesAsked = 0;
  page.on('request', (r) => { if (r.url().includes('/api/series')) seriesAsked++; });
  const skipped = await page.evaluate(() => {
    const s = window.__logmon.state;
    // Two seconds after the newest the page has or waits for never come.
    const t = Math.max(s.newest, ...s.pending.map((p) => p.t)) + 3;
    window.__eventSource.dispatchEvent(new MessageEvent('second', {
      data: JSON.stringify({ t, total: 12345, bytes: 12345, status: { '2xx': 12345 }, sections: {}, other: 12345 }),
    }));
    return t;
  });
  await waitFor('the series was not fetched again after the gap', (t) => {
    const s = window.__logmon.state;
    return !s.stale && !s.fetching && s.newest > t;
  }, skipped);
  await page.waitForTimeout(500);
  return summarize(page, errors, { gap: { skipped, seriesRefetched: seriesAsked } });
}

async function race(browser, opts) {
  const { page, errors } = await loadedPage(browser, opts, false);
  // Answers computed before the transition, delivered after it.
  let release;
  const released = new Promise((r) => { release = r; });
  const held = new Set();
  const hold = async (route) => {
    const answer = await route.fetch();
    held.add(new URL(route.request().url()).pathname.replace(/.*\/api\//, ''));
    await released;
    await route.fulfill({ response: answer });
  };
  await page.route('**/api/alerts*', hold);
  await page.route('**/api/rules*', hold);
  // `reset` refetches api/alerts; the 3-s poll asks api/rules.
  await page.evaluate(() => window.__eventSource.dispatchEvent(new MessageEvent('reset', { data: '{"skipped":1}' })));
  const deadline = Date.now() + opts.timeout;
  while (!(held.has('alerts') && held.has('rules'))) {
    if (Date.now() > deadline) fail(`api/alerts and api/rules were not both asked for: ${[...held]}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const transition = {
    rule: 'late-answer', key: 'k1', state: 'firing', at: Math.floor(Date.now() / 1000),
    at_rfc3339: '', value: 7, message: 'arrived while older answers were on their way',
  };
  await page.evaluate((t) => window.__eventSource.dispatchEvent(
    new MessageEvent('alert', { data: JSON.stringify(t) })), transition);
  release();
  await page.unrouteAll({ behavior: 'wait' });
  // Both older answers applied, and a frame for the history.
  await page.waitForTimeout(500);
  return summarize(page, errors, {
    shown: {
      ...(await page.evaluate(() => ({
        history: window.__logmon.state.history.map((h) => `${h.rule} ${h.key} ${h.state}`),
        active: [...window.__logmon.state.active.values()].map((a) => `${a.rule} ${a.key}`),
      }))),
      historyRows: await texts(page, '#history tr.row'),
      cards: await texts(page, '#active-alerts .alert-card:not(.pending) .rule'),
    },
  });
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
  const { context, page, errors } = await openPage(browser, true);
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
const modes = { check, untrusted, hidden, gap, race, unauthorized, measure };
if (!modes[opts.mode]) fail(`unknown mode ${opts.mode}: check, untrusted, hidden, gap, race, unauthorized or measure`);
const browser = await launch();
try {
  const result = await modes[opts.mode](browser, opts);
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await browser.close();
}
