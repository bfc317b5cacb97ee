// logmon's dashboard: charts (uPlot) of the collector's closed seconds, the
// latest 10-second statistics block, alerts, rules and agents.
//
// Data: `api/series?range=` once per range (and after the live stream was
// interrupted), then every second the engine closes from `api/stream`
// (Server-Sent Events), appended to the chart data in place; the rest is
// polled. Only relative URLs, so the page works under any path prefix; a
// `?token=` in the page's own URL is passed on to every API request.
//
// Live seconds are batched per animation frame: a collector catching up
// sends thousands of seconds at once, and the charts redraw once a frame.
// A hidden tab gets no frames: past about a range of waiting seconds they
// are dropped and the series is fetched again once the page is seen.
(function () {
  'use strict';

  const RANGES = [900, 3600, 21600, 86400, 604800, 2592000];
  const HISTORY_CAP = 1000; // alert history rows kept in the DOM
  const ACTIVE_CAP = 50; // active and pending alert cards shown
  const TOP_SECTIONS = 10; // section lines in the requests chart, as api/series
  const POLL_MS = 3000; // rules, agents, overview
  const RESYNC_MS = 120000; // refetch the series: the top sections move
  const SECTION_COLORS = [
    '#7eb26d', '#eab839', '#6ed0e0', '#ef843c', '#e24d42',
    '#1f78c1', '#ba43a9', '#705da0', '#508642', '#cca300',
  ];
  const STATUS = [
    ['2xx', '#73bf69'], ['3xx', '#5794f2'], ['4xx', '#ff9830'], ['5xx', '#f2495c'],
  ];

  const params = new URLSearchParams(location.search);
  const token = params.get('token');

  /** A relative API URL with the page's token, if any. */
  function api(path) {
    if (!token) return path;
    return path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
  }

  const $ = (id) => document.getElementById(id);

  // --- formatting -------------------------------------------------------

  function esc(s) {
    return String(s ?? '').replace(/[&<>"']/g, (c) => (
      { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  const pad = (n) => String(n).padStart(2, '0');

  /** `2026-11-27 12:00:05` (UTC) from unix seconds. */
  function utc(t) {
    if (t == null) return '–';
    const d = new Date(t * 1000);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) +
      ' ' + pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
  }

  const clock = (t) => utc(t).slice(11);

  // One formatter per precision: `toLocaleString` builds one per call, and
  // a thousand history rows and 50 sections call it thousands of times.
  const numberFormats = new Map();
  function num(v, digits) {
    if (v == null || !isFinite(v)) return '–';
    if (digits == null) digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
    let format = numberFormats.get(digits);
    if (!format) {
      format = new Intl.NumberFormat('en-US', {
        minimumFractionDigits: digits, maximumFractionDigits: digits,
      });
      numberFormats.set(digits, format);
    }
    return format.format(v);
  }

  function bytes(v) {
    if (v == null || !isFinite(v)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return num(v, i === 0 ? 0 : 1) + ' ' + units[i];
  }

  const pct = (v) => (v == null ? '–' : num(v * 100, 1) + ' %');

  function ago(seconds) {
    if (seconds == null) return '–';
    if (seconds < 60) return Math.round(seconds) + ' s';
    if (seconds < 3600) return Math.round(seconds / 60) + ' min';
    return num(seconds / 3600, 1) + ' h';
  }

  // --- state --------------------------------------------------------------

  const state = {
    range: RANGES.includes(Number(params.get('range'))) ? Number(params.get('range')) : 900,
    series: null, // the chart data, see `loadSeries`
    pending: [], // live seconds not yet applied, at most `pendingCap()`
    stale: false, // live seconds were dropped or missed: the series is fetched again
    frame: 0,
    liveAfter: Infinity, // seconds up to here (the series' `last`) are in the fetched series
    newest: null, // the newest closed second in the charts
    fetching: null,
    stats: null,
    history: [], // newest first, at most HISTORY_CAP
    active: new Map(), // "rule\u0000key" → {rule, key, value, message, since}
    pendingKeys: [],
    rules: null,
    agents: null,
    overview: null,
    marks: new Set(),
  };

  function mark(name) {
    if (state.marks.has(name)) return;
    state.marks.add(name);
    performance.mark('logmon:' + name);
  }

  function showError(text) {
    const el = $('error');
    el.hidden = !text;
    el.textContent = text || '';
  }

  async function getJSON(path) {
    let res;
    try {
      res = await fetch(api(path), { cache: 'no-store' });
    } catch (e) {
      throw new Error('the collector does not answer (' + (e.message || e) + ')');
    }
    if (!res.ok) {
      let reason = res.status + ' ' + res.statusText;
      try {
        const body = await res.json();
        if (body && body.error) reason += ': ' + body.error;
      } catch (_) { /* not JSON */ }
      if (res.status === 401) {
        reason += token ? ' (the token in the URL was refused)' : ' (add ?token=… to the URL)';
      }
      throw new Error(path.split('?')[0] + ' → ' + reason);
    }
    return res.json();
  }

  // --- charts ---------------------------------------------------------------

  const charts = { requests: null, status: null, bytes: null };
  // Which charts have drawn at all, and with data points (performance marks).
  const drawn = { requests: false, status: false, bytes: false };
  const drawnWithData = { requests: false, status: false, bytes: false };

  const axisColor = '#8e9aaf';
  const gridColor = 'rgba(204, 204, 220, 0.08)';

  function axes(valueFormat) {
    return [
      {
        stroke: axisColor, grid: { stroke: gridColor }, ticks: { stroke: gridColor },
        // 24-hour UTC clock; seconds only when ticks are closer than a minute.
        values: (u, vals, axis, space, incr) =>
          vals.map((v) => (incr < 60 ? clock(v) : clock(v).slice(0, 5))),
      },
      {
        stroke: axisColor, grid: { stroke: gridColor }, ticks: { stroke: gridColor },
        size: 76, values: (u, vals) => vals.map(valueFormat),
      },
    ];
  }

  /** A legend value: under the cursor, or the latest when the cursor is away. */
  function legendValue(format) {
    return (u, v, si, idx) => {
      if (idx == null) {
        const col = u.data[si];
        v = col && col.length ? col[col.length - 1] : null;
      }
      return v == null ? '–' : format(v);
    };
  }

  const compact = (v) => {
    if (v == null) return '';
    const a = Math.abs(v);
    if (a >= 1e6) return num(v / 1e6, 1) + 'M';
    if (a >= 1e3) return num(v / 1e3, 1) + 'k';
    return num(v, a < 10 && v % 1 ? 1 : 0);
  };
  const compactBytes = (v) => (v == null ? '' : bytes(v).replace('.0 ', ' '));

  function chartSize(el, height) {
    return { width: Math.max(200, el.clientWidth), height };
  }

  /** A uPlot chart in `el` with `lines` = [{label, stroke, width}]. */
  function makeChart(name, el, lines, data, height, valueFormat) {
    const opts = {
      ...chartSize(el, height),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      cursor: { sync: { key: 'logmon' }, drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: axes(valueFormat),
      legend: { live: true },
      series: [
        { label: 'UTC', value: legendValue(utc) },
        ...lines.map((l) => ({
          label: l.label,
          stroke: l.stroke,
          width: l.width || 1.25,
          fill: l.fill,
          points: { show: false },
          value: legendValue(valueFormat),
        })),
      ],
      hooks: {
        draw: [(u) => {
          drawn[name] = true;
          if (u.data[0].length > 0) drawnWithData[name] = true;
          chartsDrawn();
        }],
      },
    };
    el.textContent = '';
    return new uPlot(opts, data, el);
  }

  function chartsDrawn() {
    if (drawn.requests && drawn.status && drawn.bytes) {
      mark('charts-drawn');
      firstRender();
    }
    if (drawnWithData.requests && drawnWithData.status && drawnWithData.bytes) {
      mark('charts-data');
    }
  }

  function chartData(s) {
    return {
      requests: [s.t, s.total, ...s.sectionNames.map((n) => s.sections[n])],
      status: [s.t, ...STATUS.map(([c]) => s.status[c])],
      bytes: [s.t, s.bytes],
    };
  }

  /** Creates the charts, or only gives them new data when their series are the same. */
  function renderCharts(rebuild) {
    const s = state.series;
    const data = chartData(s);
    if (rebuild || !charts.requests) {
      for (const c of Object.values(charts)) if (c) c.destroy();
      charts.requests = makeChart('requests', $('chart-requests'), [
        { label: 'total', stroke: '#d8d9da', width: 2, fill: 'rgba(216, 217, 218, 0.06)' },
        ...s.sectionNames.map((n, i) => ({
          label: n, stroke: SECTION_COLORS[i % SECTION_COLORS.length],
        })),
      ], data.requests, 260, compact);
      charts.status = makeChart('status', $('chart-status'),
        STATUS.map(([c, color]) => ({ label: c, stroke: color, width: 1.5 })),
        data.status, 200, compact);
      charts.bytes = makeChart('bytes', $('chart-bytes'), [
        { label: 'bytes/s', stroke: '#8ab8ff', width: 1.5, fill: 'rgba(138, 184, 255, 0.12)' },
      ], data.bytes, 200, compactBytes);
    } else {
      charts.requests.setData(data.requests);
      charts.status.setData(data.status);
      charts.bytes.setData(data.bytes);
    }
    const res = s.resolution;
    $('requests-sub').textContent = 'total and top ' + s.sectionNames.length + ' sections · ' +
      (res === 1 ? '1 s' : res + ' s') + ' resolution · ' + s.source;
  }

  new ResizeObserver(() => {
    for (const [name, c] of Object.entries(charts)) {
      if (c) c.setSize(chartSize($('chart-' + name), c.height));
    }
    scheduleHistory();
  }).observe(document.querySelector('.grid'));

  // --- series: fetched, then extended live ------------------------------------

  async function loadSeries() {
    const range = state.range;
    const fetching = getJSON('api/series?range=' + range);
    state.fetching = fetching;
    let body;
    try {
      body = await fetching;
    } finally {
      if (state.fetching === fetching) state.fetching = null;
    }
    if (range !== state.range) return; // another range was picked meanwhile
    const sectionNames = Object.keys(body.sections || {});
    const old = state.series;
    state.series = {
      range: body.range,
      resolution: body.resolution || 1,
      source: body.source || '',
      t: body.t.slice(),
      total: body.total.slice(),
      bytes: body.bytes.slice(),
      status: Object.fromEntries(STATUS.map(([c]) => [c, (body.status[c] || body.t.map(() => 0)).slice()])),
      sectionNames,
      sections: Object.fromEntries(sectionNames.map((n) => [n, body.sections[n].slice()])),
      bucket: null, // the sums of the newest bucket, which live seconds complete
      rebuild: false, // a section was added: the charts are made again
    };
    // The newest closed second the series holds: the newest bucket may hold
    // only part of its seconds, and live seconds after `last` complete it.
    const last = body.last ?? (body.t.length ? body.t[body.t.length - 1] : null);
    state.liveAfter = last ?? -Infinity;
    state.newest = last;
    if (last != null && body.t.length) openedBucket(state.series, last);
    state.pending = state.pending.filter((sec) => sec.t > state.liveAfter);
    const same = old && old.resolution === state.series.resolution &&
      old.sectionNames.join('\n') === sectionNames.join('\n');
    renderCharts(!same);
    scheduleFlush();
  }

  /** Appends one bucket at time `t` holding zeros. */
  function pushBucket(s, t) {
    s.t.push(t);
    s.total.push(0);
    s.bytes.push(0);
    for (const [c] of STATUS) s.status[c].push(0);
    for (const n of s.sectionNames) s.sections[n].push(0);
  }

  const newBucket = (t) => ({ t, n: 0, total: 0, bytes: 0, status: {}, sections: {} });

  /**
   * The sums of the fetched series' newest bucket, from its per-second
   * averages over the `n` seconds of it closed up to `last`, so that the
   * live seconds after `last` add to them.
   */
  function openedBucket(s, last) {
    const i = s.t.length - 1;
    const b = newBucket(s.t[i]);
    b.n = Math.min(s.resolution, Math.max(1, last - b.t + 1));
    // Requests and bytes are whole numbers; the averages are not exact.
    const sum = (perSecond) => Math.round((perSecond || 0) * b.n);
    b.total = sum(s.total[i]);
    b.bytes = sum(s.bytes[i]);
    for (const [c] of STATUS) b.status[c] = sum(s.status[c][i]);
    for (const n of s.sectionNames) b.sections[n] = sum(s.sections[n][i]);
    s.bucket = b;
  }

  /** Adds one closed second (an `event: second`) to the series. */
  function applySecond(s, sec) {
    if (sec.t <= state.liveAfter) return; // the fetched series holds it already
    if (state.newest != null && sec.t > state.newest + 1) {
      // The stream sends every closed second: those in between never came
      // (it opened after the series was answered, say), and with them maybe
      // alerts. Applied anyway, they would show as silent.
      state.stale = true;
      return;
    }
    state.newest = Math.max(state.newest ?? sec.t, sec.t);
    const res = s.resolution;
    const at = Math.floor(sec.t / res) * res;
    const last = s.t.length ? s.t[s.t.length - 1] : null;
    if (last != null && at < last) return; // out of order: cannot happen, ignore
    if (last == null || at > last) {
      // Zero-filled, like the API: silent buckets are buckets.
      if (last != null && (at - last) / res <= s.range / res) {
        for (let b = last + res; b < at; b += res) pushBucket(s, b);
      }
      pushBucket(s, at);
      s.bucket = newBucket(at);
    } else if (res === 1) {
      // The same second again (the engine closes the seconds since its last
      // snapshot again after a restart): it replaces the first.
      s.bucket = newBucket(at);
    }
    // Sections the range did not have yet get a line, up to the API's ten
    // (on a fresh collector the series starts with none).
    for (const n of Object.keys(sec.sections || {})) {
      if (s.sectionNames.length >= TOP_SECTIONS) break;
      if (n in s.sections) continue;
      s.sectionNames.push(n);
      s.sections[n] = s.t.map(() => 0);
      s.rebuild = true;
    }
    // A bucket's value is the per-second average over its closed seconds so far.
    const b = s.bucket;
    const i = s.t.length - 1;
    b.n++;
    b.total += sec.total || 0;
    b.bytes += sec.bytes || 0;
    s.total[i] = b.total / b.n;
    s.bytes[i] = b.bytes / b.n;
    for (const [c] of STATUS) {
      b.status[c] = (b.status[c] || 0) + ((sec.status && sec.status[c]) || 0);
      s.status[c][i] = b.status[c] / b.n;
    }
    for (const n of s.sectionNames) {
      b.sections[n] = (b.sections[n] || 0) + ((sec.sections && sec.sections[n]) || 0);
      s.sections[n][i] = b.sections[n] / b.n;
    }
  }

  /** Drops the buckets that left the range. */
  function trim(s) {
    const last = s.t[s.t.length - 1];
    let cut = 0;
    while (cut < s.t.length && s.t[cut] <= last - s.range) cut++;
    if (cut === 0) return;
    s.t.splice(0, cut);
    s.total.splice(0, cut);
    s.bytes.splice(0, cut);
    for (const [c] of STATUS) s.status[c].splice(0, cut);
    for (const n of s.sectionNames) s.sections[n].splice(0, cut);
  }

  function scheduleFlush() {
    if (!state.frame) state.frame = requestAnimationFrame(flush);
  }

  /**
   * How many live seconds may wait for a frame: about the range's buckets.
   * Frames stop in a hidden tab while the stream goes on; past this, what
   * waits is dropped and the series fetched again.
   */
  function pendingCap() {
    const s = state.series;
    return s ? Math.ceil(s.range / s.resolution) : state.range;
  }

  /** One live second from the stream: waits for the next frame. */
  function onSecond(sec) {
    if (state.stale) return; // the refetch will hold it
    if (state.pending.length >= pendingCap()) {
      state.pending = [];
      state.stale = true;
    } else {
      state.pending.push(sec);
    }
    scheduleFlush();
  }

  function flush() {
    state.frame = 0;
    const s = state.series;
    if (!state.stale && s && !state.fetching && state.pending.length > 0) {
      const seconds = state.pending;
      state.pending = [];
      for (const sec of seconds) {
        applySecond(s, sec);
        if (state.stale) break;
      }
      trim(s);
      renderCharts(s.rebuild);
      s.rebuild = false;
    }
    // Seconds were dropped, or never came: what the collector holds, again.
    if (state.stale) resync();
  }

  // --- the 10-second statistics block -----------------------------------------

  function renderStats() {
    const r = state.stats;
    if (!r) return;
    const st = r.statuses || {};
    $('stats-when').textContent = clock(r.start) + ' → ' + clock(r.end) + ' UTC';
    const sections = (r.sections || []).map((x) => `<tr>
        <td class="mono">${esc(x.section)}</td>
        <td class="num">${num(x.hits, 0)}</td>
        <td class="share"><span class="bar" style="width:${Math.round((x.share || 0) * 100)}%"></span><span>${pct(x.share)}</span></td>
        <td class="num ${x.error_rate > 0.1 ? 'bad' : ''}">${pct(x.error_rate)}</td>
        <td class="num">${bytes(x.bytes)}</td></tr>`).join('');
    const counts = (list) => (list || []).map((x) =>
      `<tr><td class="mono">${esc(x.name)}</td><td class="num">${num(x.hits, 0)}</td></tr>`).join('') ||
      '<tr><td class="empty" colspan="2">none</td></tr>';
    $('stats').innerHTML = `
      <div class="kpis">
        <div><b>${num(r.hits, 0)}</b><span>hits</span></div>
        <div><b>${num(r.rate)}</b><span>req/s</span></div>
        <div><b>${bytes(r.bytes)}</b><span>sent</span></div>
        <div class="c2xx"><b>${num(st.success || 0, 0)}</b><span>2xx</span></div>
        <div class="c3xx"><b>${num(st.redirection || 0, 0)}</b><span>3xx</span></div>
        <div class="c4xx"><b>${num(st.client_error || 0, 0)}</b><span>4xx</span></div>
        <div class="c5xx"><b>${num(st.server_error || 0, 0)}</b><span>5xx</span></div>
      </div>
      <div class="scroll short"><table class="table compact">
        <thead><tr><th>section</th><th class="num">hits</th><th>share</th><th class="num">5xx rate</th><th class="num">bytes</th></tr></thead>
        <tbody>${sections || '<tr><td class="empty" colspan="5">no requests</td></tr>'}</tbody>
      </table></div>
      <div class="two">
        <div class="scroll shorter"><table class="table compact"><thead><tr><th>method</th><th class="num">hits</th></tr></thead><tbody>${counts(r.methods)}</tbody></table></div>
        <div class="scroll shorter"><table class="table compact"><thead><tr><th>client</th><th class="num">hits</th></tr></thead><tbody>${counts(r.clients)}</tbody></table></div>
      </div>`;
  }

  // --- alerts -------------------------------------------------------------------

  const alertKey = (a) => a.rule + '\u0000' + (a.key || '');

  function historyRow(a) {
    const firing = a.state === 'firing';
    return `<tr class="row ${firing ? 'firing' : 'resolved'}">
      <td class="mono">${esc(utc(a.at))}</td>
      <td><span class="badge ${firing ? 'red' : 'green'}">${esc(a.state)}</span></td>
      <td title="${esc(a.rule)}">${esc(a.rule)}</td>
      <td class="mono" title="${esc(a.key)}">${esc(a.key || '–')}</td>
      <td class="num">${num(a.value)}</td>
      <td class="msg" title="${esc(a.message)}">${esc(a.message)}</td></tr>`;
  }

  function historyCount() {
    const n = state.history.length;
    $('history-count').textContent = n ? n + (n >= HISTORY_CAP ? ' (latest)' : '') : '';
  }

  // The history holds up to HISTORY_CAP transitions but only the rows in
  // view (and a margin) are in the DOM, between two spacer rows as tall as
  // the rows left out: a thousand transitions cost a few dozen rows of
  // layout, and scrolling re-renders the window once a frame.
  const HISTORY_MARGIN = 15;
  let historyRowHeight = 0; // measured from the first row rendered
  let historyFrame = 0;

  const spacer = (rows) => (rows > 0
    ? `<tr class="spacer" style="height:${rows * (historyRowHeight || 28)}px"><td colspan="6"></td></tr>`
    : '');

  function renderHistory() {
    historyFrame = 0;
    const body = $('history');
    const n = state.history.length;
    historyCount();
    if (n === 0) {
      body.innerHTML = '<tr><td class="empty" colspan="6">No alert transitions yet</td></tr>';
      return;
    }
    const scroller = $('history-scroll');
    const height = historyRowHeight || 28;
    const first = Math.max(0, Math.floor(scroller.scrollTop / height) - HISTORY_MARGIN);
    const shown = Math.ceil((scroller.clientHeight || 420) / height) + 2 * HISTORY_MARGIN;
    const last = Math.min(n, first + shown);
    body.innerHTML = spacer(first) + state.history.slice(first, last).map(historyRow).join('') +
      spacer(n - last);
    if (!historyRowHeight) {
      const row = body.querySelector('tr.row');
      // Fractional: rounding would add up over a thousand rows.
      const measured = row ? row.getBoundingClientRect().height : 0;
      if (measured > 0) {
        historyRowHeight = measured;
        renderHistory(); // the spacers at the measured height
      }
    }
  }

  function scheduleHistory() {
    if (!historyFrame) historyFrame = requestAnimationFrame(renderHistory);
  }

  /** A live transition: on top; the oldest leaves past the cap. */
  function prependHistory(a) {
    state.history.unshift(a);
    if (state.history.length > HISTORY_CAP) state.history.length = HISTORY_CAP;
    // Someone reading further down keeps the same rows in view.
    const scroller = $('history-scroll');
    if (scroller.scrollTop > 0) scroller.scrollTop += historyRowHeight || 28;
    scheduleHistory();
  }

  /** When each active key last fired, from the history. */
  function firedAt(rule, key) {
    const h = state.history.find((x) => x.rule === rule && (x.key || '') === (key || ''));
    return h && h.state === 'firing' ? h.at : null;
  }

  function renderActive() {
    const el = $('active-alerts');
    const all = [...state.active.values()].sort((a, b) => (b.since ?? 0) - (a.since ?? 0));
    if (all.length === 0 && state.pendingKeys.length === 0) {
      el.className = 'alerts-now';
      el.innerHTML = '<div class="none">No active alerts</div>';
      return;
    }
    // A flapping rule keyed by client can fire for thousands of keys: the
    // newest are shown as cards, the rest counted.
    const active = all.slice(0, ACTIVE_CAP);
    const pending = state.pendingKeys.slice(0, Math.max(0, ACTIVE_CAP - active.length));
    const hidden = all.length - active.length + state.pendingKeys.length - pending.length;
    el.className = 'alerts-now' + (all.length ? ' has-firing' : '');
    el.innerHTML = `<div class="alerts-summary">${all.length} firing` +
      (state.pendingKeys.length ? ` · ${state.pendingKeys.length} pending` : '') +
      (hidden ? ` <span class="dim">(newest ${active.length + pending.length} shown)</span>` : '') +
      '</div>' + active.map((a) => `
      <div class="alert-card">
        <div class="alert-head"><span class="badge red">firing</span>
          <b class="rule">${esc(a.rule)}</b>${a.key ? ` <span class="mono key">${esc(a.key)}</span>` : ''}
          <span class="value">value ${num(a.value)}</span>
          <span class="since">${a.since != null ? 'since ' + esc(utc(a.since)) + ' UTC' : ''}</span></div>
        <div class="alert-msg">${esc(a.message)}</div>
      </div>`).join('') + pending.map((p) => `
      <div class="alert-card pending">
        <div class="alert-head"><span class="badge amber">pending</span>
          <b class="rule">${esc(p.rule)}</b>${p.key ? ` <span class="mono key">${esc(p.key)}</span>` : ''}
          <span class="value">value ${num(p.value)}</span>
          <span class="since">since ${esc(utc(p.since))} UTC</span></div>
      </div>`).join('');
  }

  /** A transition's effect on the active alerts and the pending keys. */
  function applyAlert(a) {
    const k = alertKey(a);
    if (a.state === 'firing') {
      state.active.set(k, { rule: a.rule, key: a.key, value: a.value, message: a.message, since: a.at });
      state.pendingKeys = state.pendingKeys.filter((p) => alertKey(p) !== k);
    } else {
      state.active.delete(k);
    }
  }

  // Transitions that arrive over the stream while an api/alerts or api/rules
  // answer is on its way: the answer may be older than they are, so they
  // are applied again on top of it, never lost to it.
  const receiving = new Set();
  async function withAlertsMeanwhile(fetching) {
    const received = [];
    receiving.add(received);
    try {
      return { body: await fetching, received };
    } finally {
      receiving.delete(received);
    }
  }

  function onAlert(a) {
    for (const r of receiving) r.push(a);
    applyAlert(a);
    prependHistory(a);
    renderActive();
  }

  const transitionId = (a) => alertKey(a) + '\u0000' + a.state + '\u0000' + a.at;

  async function loadAlerts() {
    const { body, received } = await withAlertsMeanwhile(getJSON('api/alerts?limit=' + HISTORY_CAP));
    const listed = new Set((body.history || []).map(transitionId));
    const missed = received.filter((a) => !listed.has(transitionId(a))).reverse();
    state.history = [...missed, ...(body.history || [])].slice(0, HISTORY_CAP);
    state.active = new Map((body.active || []).map((a) => [alertKey(a), {
      ...a, since: firedAt(a.rule, a.key),
    }]));
    for (const a of received) applyAlert(a);
    renderHistory();
    renderActive();
  }

  // --- rules and agents -----------------------------------------------------------

  /** The rules table, and the alerts from the rules view plus `received` since it was asked for. */
  function renderRules(received) {
    const rules = state.rules || [];
    // The rules view is refreshed by the engine: it is the reference for what fires.
    const active = new Map();
    const pendingKeys = [];
    for (const r of rules) {
      for (const a of r.active || []) {
        const k = alertKey({ rule: r.name, key: a.key });
        const known = state.active.get(k);
        active.set(k, {
          rule: r.name, key: a.key, value: a.value, message: a.message,
          since: known ? known.since : firedAt(r.name, a.key),
        });
      }
      for (const p of r.pending || []) pendingKeys.push({ rule: r.name, ...p });
    }
    state.active = active;
    state.pendingKeys = pendingKeys;
    for (const a of received) applyAlert(a);
    renderActive();

    $('rules').innerHTML = rules.map((r) => {
      const h = r.health || {};
      const names = new Set([...Object.keys(r.defaults || {}), ...Object.keys(r.params || {})]);
      const ps = [...names].sort().map((n) => {
        const set = r.params && n in r.params;
        return `<span class="${set ? 'set' : 'default'}">${esc(n)}=${esc(set ? r.params[n] : r.defaults[n])}</span>`;
      });
      if (r.for) ps.push(`<span class="set">for=${esc(r.for)}s</span>`);
      if (r.keep_firing_for) ps.push(`<span class="set">keep_firing_for=${esc(r.keep_firing_for)}s</span>`);
      const firing = (r.active || []).length;
      const pend = (r.pending || []).length;
      return `<tr>
        <td class="instance"><b>${esc(r.name)}</b><div class="dim">${esc(r.rule)} ${esc(r.version || '')}</div></td>
        <td class="params">${ps.join(' ')}</td>
        <td class="num">${num(h.evaluations, 0)}</td>
        <td class="num">${num(h.mean_us, 1)}</td>
        <td>${h.quarantined
          ? `<span class="badge red">quarantined</span> <span class="dim">${esc(h.quarantined)}</span>`
          : '<span class="badge green">ok</span>'}</td>
        <td>${firing ? `<span class="badge red">${firing} firing</span>` : ''}
            ${pend ? `<span class="badge amber">${pend} pending</span>` : ''}
            ${!firing && !pend ? '<span class="dim">–</span>' : ''}</td></tr>`;
    }).join('') || '<tr><td class="empty" colspan="6">No rule instances</td></tr>';
  }

  function renderAgents() {
    const agents = state.agents || [];
    const now = (state.overview && state.overview.now) || Date.now() / 1000;
    const rows = [];
    for (const a of agents) {
      const streams = a.streams && a.streams.length ? a.streams : [null];
      streams.forEach((s, i) => {
        const head = i === 0
          ? `<td rowspan="${streams.length}"><b class="mono">${esc(a.agent)}</b>
               ${a.host && a.host !== a.agent ? `<div class="dim mono">${esc(a.host)}</div>` : ''}
               <div class="dim">seen ${esc(ago(now - a.last_seen))} ago</div></td>`
          : '';
        if (!s) {
          rows.push(`<tr>${head}<td class="empty" colspan="5">no files</td></tr>`);
          return;
        }
        // An agent says "caught up" only when a file is read to its end and
        // acknowledged; a file that never stops growing is live when its
        // newest event is within a few seconds.
        const badge = s.finished ? '<span class="badge grey">finished</span>'
          : s.caught_up ? '<span class="badge green">caught up</span>'
            : s.lag_seconds != null && s.lag_seconds <= 5 ? '<span class="badge green">live</span>'
              : '<span class="badge amber">catching up</span>';
        rows.push(`<tr>${head}
          <td class="mono path">${esc(s.file || s.stream)}</td>
          <td class="num">${num(s.events, 0)}</td>
          <td class="mono nowrap">${esc(s.watermark != null ? utc(s.watermark) : '–')}</td>
          <td class="num">${s.lag_seconds != null ? esc(num(s.lag_seconds, 1)) + ' s' : '–'}</td>
          <td>${badge}</td></tr>`);
      });
    }
    $('agents').innerHTML = rows.join('') || '<tr><td class="empty" colspan="6">No agents yet</td></tr>';
  }

  function renderOverview() {
    const o = state.overview;
    if (!o) return;
    const parts = [
      ['watermark', o.watermark != null ? clock(o.watermark) + ' UTC' : '–'],
      ['engine lag', o.engine_lag_seconds != null ? num(o.engine_lag_seconds, 1) + ' s' : '–'],
      ['events', num(o.events_total, 0)],
      ['late', num(o.late_total, 0)],
    ];
    $('overview').innerHTML = parts.map(([k, v]) =>
      `<span><span class="dim">${esc(k)}</span> ${esc(v)}</span>`).join('') +
      (o.version ? `<span class="dim">v${esc(o.version)}</span>` : '');
  }

  async function poll() {
    const results = await Promise.allSettled([
      withAlertsMeanwhile(getJSON('api/rules')).then((r) => { state.rules = r.body; renderRules(r.received); }),
      getJSON('api/agents').then((a) => { state.agents = a; }),
      getJSON('api/overview').then((o) => { state.overview = o; renderOverview(); }),
    ]);
    renderAgents();
    const failed = results.find((r) => r.status === 'rejected');
    showError(failed ? String(failed.reason.message || failed.reason) : '');
    return results;
  }

  // --- first render -----------------------------------------------------------------

  let loaded = false;
  function firstRender() {
    if (loaded && state.marks.has('charts-drawn')) mark('first-render');
  }

  // --- live stream --------------------------------------------------------------------

  let source = null;
  function connect() {
    const conn = $('conn');
    source = new EventSource(api('api/stream'));
    let opened = false;
    source.addEventListener('open', () => {
      conn.dataset.state = 'live';
      conn.textContent = 'live';
      // After an interruption, what was missed comes from the API again.
      if (opened) resync();
      opened = true;
    });
    source.addEventListener('error', () => {
      conn.dataset.state = 'down';
      conn.textContent = 'reconnecting';
      // The browser retries after a network error by itself, but gives up
      // on an HTTP error (a 401, or 503 when the collector has too many
      // streams open): try again in a while, then refetch what was missed.
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(() => { connect(); resync(); }, 10000);
      }
    });
    source.addEventListener('second', (e) => onSecond(JSON.parse(e.data)));
    source.addEventListener('stats', (e) => {
      state.stats = JSON.parse(e.data);
      renderStats();
    });
    source.addEventListener('alert', (e) => onAlert(JSON.parse(e.data)));
    source.addEventListener('reset', () => resync());
  }

  function resync() {
    state.stale = false;
    state.pending = [];
    Promise.all([loadSeries(), loadAlerts()]).catch((e) => showError(e.message));
  }

  // Frames resume when the tab is seen again, and with them the refetch of
  // a series that dropped live seconds meanwhile.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.stale) resync();
  });

  // --- range selector ----------------------------------------------------------------

  function renderRanges() {
    for (const b of $('ranges').querySelectorAll('button')) {
      b.classList.toggle('on', Number(b.dataset.range) === state.range);
    }
  }

  $('ranges').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-range]');
    if (!b) return;
    state.range = Number(b.dataset.range);
    const q = new URLSearchParams(location.search);
    q.set('range', state.range);
    history.replaceState(null, '', '?' + q.toString());
    renderRanges();
    state.pending = [];
    loadSeries().catch((err) => showError(err.message));
  });

  // --- start ----------------------------------------------------------------------------

  async function start() {
    renderRanges();
    $('history-scroll').addEventListener('scroll', scheduleHistory, { passive: true });
    connect(); // first, so no second falls between the series and the stream
    const results = await Promise.allSettled([
      loadSeries(),
      loadAlerts(),
      getJSON('api/stats').then((s) => { if (s) { state.stats = s; renderStats(); } }),
      poll(),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) showError(String(failed.reason.message || failed.reason));
    loaded = true;
    firstRender();
    setInterval(() => { poll().catch(() => {}); }, POLL_MS);
    setInterval(() => { if (!state.fetching) loadSeries().catch((e) => showError(e.message)); }, RESYNC_MS);
  }

  // For tests and benchmarks: the charts, their data and the state.
  window.__logmon = {
    charts,
    state,
    /** Points in the total requests series. */
    points: () => (charts.requests ? charts.requests.data[0].length : 0),
    /** Points with a value above zero in the total requests series. */
    nonZero: () => (charts.requests ? charts.requests.data[1].filter((v) => v > 0).length : 0),
    marks: () => performance.getEntriesByType('mark')
      .filter((m) => m.name.startsWith('logmon:'))
      .map((m) => ({ name: m.name.slice(7), at: m.startTime })),
  };

  start().catch((e) => showError(e.message));
})();
