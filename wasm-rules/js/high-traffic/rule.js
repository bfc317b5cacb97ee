// `high-traffic` in JavaScript: the exercise's alert, the same as the Rust
// rule (`wasm-rules/high-traffic`). At each second `t`, the average hits per
// second over `t-window+1 ..= t` above `threshold` fires; below it
// resolves; equal to it changes nothing. Silent seconds count as zero hits,
// so a recovery during silence happens at the second it is due. Its state is
// the Rust rule's byte for byte.

import {
  ConfigError, StateReader, StateWriter, Window, decimal, exportRule, fire, param, resolve, when,
} from './logmon-rule.js';

const STATE_VERSION = 1;

export class HighTraffic {
  constructor() {
    this.threshold = 10;
    this.window = new Window(120);
    // When firing: [the second it fired, the message it fired with].
    this.fired = null;
  }

  static describe() {
    return {
      name: 'high-traffic',
      description: 'Average requests per second over a window above a threshold',
      version: '0.1.0',
      params: [
        param('threshold', 'requests per second that fire the alert', 10),
        param('window', 'seconds averaged, ending at the evaluated second', 120),
      ],
    };
  }

  configure(params) {
    const threshold = params.number('threshold', 10);
    const window = params.integer('window', 120);
    if (!Number.isFinite(threshold) || threshold < 0) {
      throw new ConfigError(`threshold must be a non-negative number, got ${threshold}`);
    }
    if (window === 0 || window > 86400) {
      throw new ConfigError(`window must be 1 ..= 86400 seconds, got ${window}`);
    }
    this.threshold = threshold;
    this.window = new Window(window);
  }

  evaluate(second) {
    this.window.push(second.hits);
    const value = this.window.mean();
    if (this.fired === null) {
      if (value > this.threshold) {
        const message = `High traffic generated an alert - hits = ${decimal(value)}, triggered at ${when(second.time)}`;
        this.fired = [second.time, message];
        return [fire('', value, message)];
      }
      return [];
    }
    if (value < this.threshold) {
      this.fired = null;
      return [resolve('', value, `High traffic alert recovered - hits = ${decimal(value)}, recovered at ${when(second.time)}`)];
    }
    return [fire('', value, this.fired[1])];
  }

  save() {
    const w = new StateWriter(STATE_VERSION);
    w.f64(this.threshold);
    this.window.save(w);
    if (this.fired === null) w.bool(false);
    else w.bool(true).i64(this.fired[0]).str(this.fired[1]);
    return w.finish();
  }

  restore(state) {
    const r = new StateReader(state, STATE_VERSION);
    r.f64(); // the threshold it was saved with
    const window = Window.restore(r, this.window.length);
    const fired = r.bool() ? [r.i64(), r.str()] : null;
    r.end();
    this.window = window;
    this.fired = fired;
  }
}

export const { describe, configure, evaluate, save, restore } = exportRule(HighTraffic);
