// `hostile` in JavaScript: misbehaves on purpose, for the host's sandbox
// tests (never shipped). `mode`: `throw` throws an error, `spin` loops
// forever, `hog` allocates without bound, `calm` behaves; `after`: the good
// evaluations before it misbehaves.

import { exportRule, param } from './logmon-rule.js';

export class Hostile {
  constructor() {
    this.mode = 'calm';
    this.after = 0;
    this.seen = 0;
  }

  static describe() {
    return {
      name: 'hostile-js',
      description: 'Misbehaves on purpose (sandbox tests)',
      version: '0.1.0',
      params: [param('mode', 'throw | spin | hog | calm', 'calm'), param('after', 'good evaluations before misbehaving', 0)],
    };
  }

  configure(params) {
    this.mode = params.text('mode', 'calm');
    this.after = params.integer('after', 0);
  }

  evaluate(second) {
    this.seen += 1;
    if (this.seen <= this.after) return [];
    if (this.mode === 'throw') throw new TypeError(`hostile rule throwing at second ${second.time}`);
    if (this.mode === 'spin') {
      let x = second.hits;
      for (;;) x = (x * 31 + 1) % 1000003;
    }
    if (this.mode === 'hog') {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(16 << 20));
    }
    return [];
  }

  save() {
    return Uint8Array.of(this.seen);
  }

  restore(state) {
    this.seen = state[0] ?? 0;
  }
}

export const { describe, configure, evaluate, save, restore } = exportRule(Hostile);
