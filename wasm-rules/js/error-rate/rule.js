// `error-rate` in JavaScript, the same as the Rust rule
// (`wasm-rules/error-rate`): per section, the share of 5xx responses over
// the last `window` seconds. Above `threshold` with at least `min_requests`
// requests in the window fires, keyed by section; at or below the
// threshold, or with too few requests to judge, resolves. Its state is the
// Rust rule's byte for byte.

import {
  ConfigError, StateReader, StateWriter, Window, compareKeys, exportRule, fixed, param, when,
} from './logmon-rule.js';

const STATE_VERSION = 1;

export class ErrorRate {
  constructor() {
    this.threshold = 0.1;
    this.window = 60;
    this.minRequests = 20;
    // Section → { requests, errors, firing }.
    this.sections = new Map();
  }

  static describe() {
    return {
      name: 'error-rate',
      description: 'Share of 5xx responses per section over a window above a threshold',
      version: '0.1.0',
      params: [
        param('threshold', 'share of 5xx responses (0..1) that fires', 0.1),
        param('window', 'seconds looked back, ending at the evaluated second', 60),
        param('min_requests', 'requests in the window needed to judge a section', 20),
      ],
    };
  }

  configure(params) {
    const threshold = params.number('threshold', 0.1);
    const window = params.integer('window', 60);
    const minRequests = params.integer('min_requests', 20);
    if (!(threshold >= 0 && threshold <= 1)) {
      throw new ConfigError(`threshold must be within 0 ..= 1, got ${threshold}`);
    }
    if (window === 0 || window > 86400) {
      throw new ConfigError(`window must be 1 ..= 86400 seconds, got ${window}`);
    }
    this.threshold = threshold;
    this.window = window;
    this.minRequests = Math.max(minRequests, 1);
  }

  message(section, firing, share, requests, time) {
    const pct = fixed(share * 100, 1);
    const at = when(time);
    if (firing) return `High error rate on ${section} - ${pct}% 5xx over ${this.window} s, triggered at ${at}`;
    if (requests < this.minRequests) {
      return `Error rate on ${section} no longer judged - ${requests} requests over ${this.window} s (min ${this.minRequests}), resolved at ${at}`;
    }
    return `Error rate on ${section} recovered - ${pct}% 5xx over ${this.window} s, recovered at ${at}`;
  }

  section() {
    return { requests: new Window(this.window), errors: new Window(this.window), firing: false };
  }

  evaluate(second) {
    const now = new Map();
    for (const s of second.sections) {
      if (!now.has(s.section)) now.set(s.section, [s.hits, s.statuses.serverError]);
      if (!this.sections.has(s.section)) this.sections.set(s.section, this.section());
    }
    const alerts = [];
    // Sections in key order, as the Rust rule's BTreeMap.
    for (const name of [...this.sections.keys()].sort(compareKeys)) {
      const w = this.sections.get(name);
      const [hits, errors] = now.get(name) ?? [0, 0];
      w.requests.push(hits);
      w.errors.push(errors);
      const requests = w.requests.sum();
      const share = requests === 0 ? 0 : w.errors.sum() / requests;
      const was = w.firing;
      w.firing = requests >= this.minRequests && share > this.threshold;
      if (w.firing || was) {
        alerts.push({ key: name, firing: w.firing, value: share, message: this.message(name, w.firing, share, requests, second.time) });
      }
      if (requests === 0 && !w.firing) this.sections.delete(name);
    }
    return alerts;
  }

  save() {
    const w = new StateWriter(STATE_VERSION);
    w.u64(this.sections.size);
    for (const name of [...this.sections.keys()].sort(compareKeys)) {
      const s = this.sections.get(name);
      w.str(name).bool(s.firing);
      s.requests.save(w);
      s.errors.save(w);
    }
    return w.finish();
  }

  restore(state) {
    const r = new StateReader(state, STATE_VERSION);
    const sections = new Map();
    for (let n = r.u64(); n > 0; n--) {
      const name = r.str();
      const firing = r.bool();
      const requests = Window.restore(r, this.window);
      const errors = Window.restore(r, this.window);
      sections.set(name, { requests, errors, firing });
    }
    r.end();
    this.sections = sections;
  }
}

export const { describe, configure, evaluate, save, restore } = exportRule(ErrorRate);
