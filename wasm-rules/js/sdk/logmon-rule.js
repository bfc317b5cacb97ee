// The SDK for logmon alert rules written in JavaScript.
//
// A rule is a class with `static describe()`, `configure(params)`,
// `evaluate(second)`, `save()` and `restore(state)`; `exportRule(MyRule)`
// returns the functions of the `logmon:rules/rule` component world
// (`wasm-rules/wit/rule.wit`), which the rule's module exports and
// componentize-js builds into a WebAssembly component:
//
//   export const { describe, configure, evaluate, save, restore } = exportRule(MyRule);
//
// It mirrors the Rust SDK (`wasm-rules/sdk`): `Params` with defaults and
// validation, `Window` and `KeyedWindow` sliding sums, `StateWriter` and
// `StateReader` (the Rust SDK's byte format), `decimal`, `when`, `utc`.
// The host's u64 fields arrive as BigInt; `exportRule` hands the rule a
// second whose counts are Numbers (exact below 2^53). Rules are plain
// JavaScript, so their logic is tested natively (`node --test`).

/** A parameter the rule refuses: the host does not start the instance. */
export class ConfigError extends Error {}
/** A saved state the rule does not understand: it starts fresh. */
export class StateError extends Error {}

export function param(name, description, defaultValue) {
  return { name, description, defaultValue: String(defaultValue) };
}

export function fire(key, value, message) {
  return { key, firing: true, value, message };
}

export function resolve(key, value, message) {
  return { key, firing: false, value, message };
}

const INTEGER = /^\+?[0-9]+$/;
const NUMBER = /^[+-]?(inf|infinity|nan|([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)$/i;

/** The parameters given to an instance: names and text values. */
export class Params {
  constructor(values) {
    this.values = values.map(([k, v]) => [String(k), String(v)]);
  }

  /** Refuse names the rule does not declare. */
  check(info) {
    const known = info.params.map((p) => p.name);
    for (const [name] of this.values) {
      if (!known.includes(name)) {
        throw new ConfigError(`unknown parameter \`${name}\` (known: ${known.join(', ')})`);
      }
    }
  }

  /** The text of a parameter, the last given, or undefined. */
  raw(name) {
    for (let i = this.values.length - 1; i >= 0; i--) {
      if (this.values[i][0] === name) return this.values[i][1];
    }
    return undefined;
  }

  text(name, fallback) {
    const v = this.raw(name);
    return v === undefined ? fallback : v.trim();
  }

  /** A non-negative integer (`120`), as Rust's `u64`/`usize` parse. */
  integer(name, fallback) {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!INTEGER.test(v.trim()) || !Number.isSafeInteger(Number(v.trim()))) {
      throw new ConfigError(`parameter \`${name}\` = \`${v}\`: not a non-negative integer`);
    }
    return Number(v.trim());
  }

  /** A number (`10`, `0.5`, `1e3`), as Rust's `f64` parse. */
  number(name, fallback) {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const t = v.trim();
    if (!NUMBER.test(t)) throw new ConfigError(`parameter \`${name}\` = \`${v}\`: not a number`);
    const lower = t.toLowerCase().replace(/^\+/, '');
    if (lower.endsWith('nan')) return NaN;
    if (lower.endsWith('inf') || lower.endsWith('infinity')) {
      return lower.startsWith('-') ? -Infinity : Infinity;
    }
    return Number(t);
  }

  boolean(name, fallback) {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (v.trim() !== 'true' && v.trim() !== 'false') {
      throw new ConfigError(`parameter \`${name}\` = \`${v}\`: not true or false`);
    }
    return v.trim() === 'true';
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Appends values to a state blob: little-endian, as the Rust SDK's. */
export class StateWriter {
  constructor(version) {
    this.bytes = [version];
    this.scratch = new DataView(new ArrayBuffer(8));
  }
  push8() {
    for (let i = 0; i < 8; i++) this.bytes.push(this.scratch.getUint8(i));
    return this;
  }
  u64(v) {
    this.scratch.setBigUint64(0, BigInt(v), true);
    return this.push8();
  }
  i64(v) {
    this.scratch.setBigInt64(0, BigInt(v), true);
    return this.push8();
  }
  f64(v) {
    this.scratch.setFloat64(0, v, true);
    return this.push8();
  }
  bool(v) {
    this.bytes.push(v ? 1 : 0);
    return this;
  }
  str(v) {
    const data = encoder.encode(v);
    this.u64(data.length);
    for (const b of data) this.bytes.push(b);
    return this;
  }
  finish() {
    return Uint8Array.from(this.bytes);
  }
}

/** Reads what `StateWriter` wrote, in order; short input is a
 * `StateError`, never a crash. */
export class StateReader {
  constructor(state, version) {
    const bytes = state instanceof Uint8Array ? state : Uint8Array.from(state);
    if (bytes.length === 0) throw new StateError('empty state');
    if (bytes[0] !== version) throw new StateError(`state version ${bytes[0]}, expected ${version}`);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 1;
  }
  take(n) {
    if (this.view.byteLength - this.at < n) throw new StateError('state is truncated');
    const at = this.at;
    this.at += n;
    return at;
  }
  /** A u64 as a Number (exact below 2^53, which counts and lengths are). */
  u64() {
    return Number(this.view.getBigUint64(this.take(8), true));
  }
  i64() {
    return Number(this.view.getBigInt64(this.take(8), true));
  }
  f64() {
    return this.view.getFloat64(this.take(8), true);
  }
  bool() {
    return this.view.getUint8(this.take(1)) !== 0;
  }
  str() {
    const n = this.u64();
    const at = this.take(n);
    try {
      return decoder.decode(new Uint8Array(this.view.buffer, this.view.byteOffset + at, n));
    } catch {
      throw new StateError('string is not UTF-8');
    }
  }
  end() {
    const left = this.view.byteLength - this.at;
    if (left) throw new StateError(`${left} trailing bytes in state`);
  }
}

/** Sum of a per-second quantity over the last `length` seconds
 * `t-length+1 ..= t`: a ring indexed by arrival (the host delivers every
 * second, silent ones included). Seconds before the first count as 0. */
export class Window {
  constructor(length) {
    this.slots = new Array(Math.max(1, length)).fill(0);
    this.next = 0;
    this.total = 0;
  }
  get length() {
    return this.slots.length;
  }
  /** Push the newest second's value; the oldest leaves and is returned, so
   * feeding it to another window chains the two. */
  push(value) {
    const old = this.slots[this.next];
    this.slots[this.next] = value;
    this.total += value - old;
    this.next = (this.next + 1) % this.slots.length;
    return old;
  }
  sum() {
    return this.total;
  }
  mean() {
    return this.total / this.slots.length;
  }
  save(w) {
    // Oldest first from position 0, so equal windows save equal bytes
    // wherever the ring stands (the host compares saves over silence).
    w.u64(this.slots.length).u64(0);
    const n = this.slots.length;
    for (let i = 0; i < n; i++) w.u64(this.slots[(this.next + i) % n]);
  }
  static restore(r, length) {
    const saved = r.u64();
    if (saved !== length) throw new StateError(`saved window has ${saved} seconds, configured ${length}`);
    const next = r.u64();
    if (next >= Math.max(1, length)) throw new StateError('window position out of range');
    const w = new Window(length);
    for (let i = 0; i < length; i++) w.slots[i] = r.u64();
    w.next = next;
    w.total = w.slots.reduce((a, b) => a + b, 0);
    return w;
  }
}

/** Per-key sums over the last `length` seconds, kept sparsely: only the
 * non-zero entries pushed in the window; a key whose sum falls to zero is
 * forgotten. Push once per second, silent ones included. */
export class KeyedWindow {
  constructor(length) {
    this.length = Math.max(1, length);
    this.seconds = [];
    this.sums = new Map();
  }
  keys() {
    return this.sums.size;
  }
  /** The newest second's [key, value] entries; zeros ignored, repeated keys
   * added up. */
  push(entries) {
    if (this.seconds.length === this.length) {
      for (const [key, value] of this.seconds.shift()) {
        const left = (this.sums.get(key) ?? 0) - value;
        if (left) this.sums.set(key, left);
        else this.sums.delete(key);
      }
    }
    const slot = new Map();
    for (const [key, value] of entries) {
      if (!value) continue;
      slot.set(key, (slot.get(key) ?? 0) + value);
      this.sums.set(key, (this.sums.get(key) ?? 0) + value);
    }
    this.seconds.push([...slot]);
  }
  get(key) {
    return this.sums.get(key) ?? 0;
  }
  /** Keys with a non-zero sum and their sums, in key order. */
  entries() {
    return [...this.sums].sort(([a], [b]) => compareKeys(a, b));
  }
  save(w) {
    w.u64(this.length).u64(this.seconds.length);
    for (const slot of this.seconds) {
      w.u64(slot.length);
      for (const [key, value] of slot) w.str(key).u64(value);
    }
  }
  static restore(r, length) {
    const win = new KeyedWindow(length);
    const saved = r.u64();
    if (saved !== win.length) throw new StateError(`saved window has ${saved} seconds, configured ${win.length}`);
    const held = r.u64();
    if (held > saved) throw new StateError(`saved window holds ${held} of ${saved} seconds`);
    for (let i = 0; i < held; i++) {
      const slot = [];
      for (let n = r.u64(); n > 0; n--) {
        const key = r.str();
        const value = r.u64();
        win.sums.set(key, (win.sums.get(key) ?? 0) + value);
        slot.push([key, value]);
      }
      win.seconds.push(slot);
    }
    for (const [k, v] of win.sums) if (v <= 0) win.sums.delete(k);
    return win;
  }
}

/** Keys in the order Rust's `BTreeMap<String, _>` and Python's `sorted`
 * keep them: by code point (JavaScript's `<` compares UTF-16 units). */
export function compareKeys(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/** Unix seconds as `2019-02-07T21:11:00Z` (proleptic Gregorian). */
export function utc(time) {
  const div = (a, b) => Math.floor(a / b);
  const days = div(time, 86400);
  const secs = time - days * 86400;
  const z = days + 719468;
  const era = div(z, 146097);
  const doe = z - era * 146097;
  const yoe = div(doe - div(doe, 1460) + div(doe, 36524) - div(doe, 146096), 365);
  const doy = doe - (365 * yoe + div(yoe, 4) - div(yoe, 100));
  const mp = div(5 * doy + 2, 153);
  const day = doy - div(153 * mp + 2, 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(year, 4)}-${p(month)}-${p(day)}T${p(div(secs, 3600))}:${p(div(secs % 3600, 60))}:${p(secs % 60)}Z`;
}

/** Unix seconds for messages: `2019-02-07 21:11:00 UTC (1549573860)`. */
export function when(time) {
  const iso = utc(time);
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC (${time})`;
}

/** `value` with `digits` decimals exactly as Rust's `{:.N}` prints it:
 * round half to even on the exact binary value (`toFixed` rounds an exact
 * half up: 0.125 → "0.13" where Rust prints "0.12"); `inf`, `NaN`. */
export function fixed(value, digits) {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  const negative = value < 0 || Object.is(value, -0);
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(value));
  const bits = view.getBigUint64(0);
  let exponent = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & ((1n << 52n) - 1n);
  if (exponent === 0) exponent = 1;
  else mantissa |= 1n << 52n;
  exponent -= 1075;
  // |value| × 10^digits = num / den exactly.
  let num = mantissa * 10n ** BigInt(digits);
  let den = 1n;
  if (exponent >= 0) num <<= BigInt(exponent);
  else den <<= BigInt(-exponent);
  let q = num / den;
  const twice = 2n * (num - q * den);
  if (twice > den || (twice === den && q % 2n === 1n)) q += 1n;
  let s = q.toString().padStart(digits + 1, '0');
  if (digits > 0) s = `${s.slice(0, -digits)}.${s.slice(-digits)}`;
  return (negative ? '-' : '') + s;
}

/** A measured value as messages print it: at most two decimals, trailing
 * zeros dropped (`10.05`, `9.9`, `3`). */
export function decimal(value) {
  const s = fixed(value, 2);
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** A second with these [section, hits, 5xx] for tests; hits add up. */
export function second(time, sections = []) {
  const s = emptySecond(time);
  for (const [section, hits, errors] of sections) {
    s.hits += hits;
    s.sections.push({ section, hits, bytes: 0, statuses: { ...classes(), success: hits - errors, serverError: errors } });
  }
  return s;
}

function classes() {
  return { informational: 0, success: 0, redirection: 0, clientError: 0, serverError: 0, other: 0 };
}

/** A second with no traffic, as the host delivers during silence. */
export function emptySecond(time) {
  return { time, hits: 0, bytes: 0, statuses: classes(), sections: [], statusCodes: [], methods: [], topClients: [] };
}

const count = (c) => ({
  informational: Number(c.informational),
  success: Number(c.success),
  redirection: Number(c.redirection),
  clientError: Number(c.clientError),
  serverError: Number(c.serverError),
  other: Number(c.other),
});

/** The host's second with its BigInt counts as Numbers. */
export function fromHost(s) {
  return {
    time: Number(s.time),
    hits: Number(s.hits),
    bytes: Number(s.bytes),
    statuses: count(s.statuses),
    sections: s.sections.map((x) => ({ section: x.section, hits: Number(x.hits), bytes: Number(x.bytes), statuses: count(x.statuses) })),
    statusCodes: s.statusCodes.map((x) => ({ status: x.status, hits: Number(x.hits) })),
    methods: s.methods.map((x) => ({ method: x.method, hits: Number(x.hits) })),
    topClients: s.topClients.map((x) => ({ client: x.client, hits: Number(x.hits) })),
  };
}

/** The component's exports for `RuleClass`. A `ConfigError` (or
 * `StateError` in `restore`) is the call's refusal; any other exception
 * traps the instance, and the host quarantines it with the error's text. */
export function exportRule(RuleClass) {
  let rule = new RuleClass();
  const refusal = (e, Kind) => {
    if (e instanceof Kind) throw e.message;
    throw e;
  };
  return {
    describe: () => RuleClass.describe(),
    configure(params) {
      const p = new Params(params);
      const fresh = new RuleClass();
      try {
        p.check(RuleClass.describe());
        fresh.configure(p);
      } catch (e) {
        refusal(e, ConfigError);
      }
      rule = fresh;
    },
    evaluate: (s) =>
      rule.evaluate(fromHost(s)).map((a) => ({ key: a.key, firing: a.firing, value: Number(a.value), message: a.message })),
    save: () => rule.save(),
    restore(state) {
      try {
        rule.restore(state);
      } catch (e) {
        refusal(e, StateError);
      }
    },
  };
}
