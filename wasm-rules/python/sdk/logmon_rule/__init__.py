"""The SDK for logmon alert rules written in Python.

A rule is a subclass of `Rule`; `export(MyRule)` turns it into the exports
of the `logmon:rules/rule` component world (`wasm-rules/wit/rule.wit`), which
componentize-py builds into a WebAssembly component:

    class WitWorld(export(MyRule)): pass      # in app.py

The host calls the rule once per closed second of event time, in order,
silent seconds included, and the rule answers with every alert firing after
that second; the host derives fired/resolved transitions from consecutive
answers. It mirrors the Rust SDK (`wasm-rules/sdk`): `Params` with defaults
and validation, `Window` and `KeyedWindow` sliding sums, `StateWriter` and
`StateReader` (the same byte format as Rust's), `decimal`, `when` and `utc`.
Rules are plain Python, so their logic is unit-tested natively
(`python3 -m unittest`), with the records built by `second(...)`.
"""

from dataclasses import dataclass, field
import re
import struct
from typing import Dict, Iterable, List, Optional, Tuple

__all__ = [
    "Alert", "ClientCount", "ConfigError", "KeyedWindow", "MethodCount",
    "Param", "Params", "Rule", "RuleInfo", "Second", "SectionStats",
    "StateError", "StateReader", "StateWriter", "StatusClasses",
    "StatusCount", "Window", "decimal", "export", "param", "second", "utc",
    "when",
]


# --- the interface's records, for native tests (the host passes its own) ----

@dataclass
class StatusClasses:
    informational: int = 0
    success: int = 0
    redirection: int = 0
    client_error: int = 0
    server_error: int = 0
    other: int = 0


@dataclass
class SectionStats:
    section: str
    hits: int = 0
    bytes: int = 0
    statuses: StatusClasses = field(default_factory=StatusClasses)


@dataclass
class StatusCount:
    status: int
    hits: int


@dataclass
class MethodCount:
    method: str
    hits: int


@dataclass
class ClientCount:
    client: str
    hits: int


@dataclass
class Second:
    """One closed second `[time, time + 1)`; silent seconds have zero hits."""
    time: int
    hits: int = 0
    bytes: int = 0
    statuses: StatusClasses = field(default_factory=StatusClasses)
    sections: List[SectionStats] = field(default_factory=list)
    status_codes: List[StatusCount] = field(default_factory=list)
    methods: List[MethodCount] = field(default_factory=list)
    top_clients: List[ClientCount] = field(default_factory=list)


def second(time: int, sections: Iterable[Tuple[str, int, int]] = ()) -> Second:
    """A second with these (section, hits, 5xx) for tests; hits add up."""
    s = Second(time)
    for name, hits, errors in sections:
        s.hits += hits
        s.sections.append(SectionStats(
            name, hits, 0, StatusClasses(success=hits - errors, server_error=errors)))
    return s


@dataclass
class Param:
    name: str
    description: str
    default_value: str


@dataclass
class RuleInfo:
    name: str
    description: str
    version: str
    params: List[Param]


@dataclass
class Alert:
    """One alert key's state after a second; `key` "" for a single alert."""
    key: str
    firing: bool
    value: float
    message: str

    @staticmethod
    def fire(key: str, value: float, message: str) -> "Alert":
        return Alert(key, True, float(value), message)

    @staticmethod
    def resolve(key: str, value: float, message: str) -> "Alert":
        return Alert(key, False, float(value), message)


def param(name: str, description: str, default) -> Param:
    """A parameter's description; the default is shown as text."""
    if isinstance(default, bool):
        default = "true" if default else "false"
    return Param(name, description, str(default))


# --- parameters ---------------------------------------------------------------

class ConfigError(ValueError):
    """A parameter the rule refuses: the host does not start the instance."""


_INTEGER = re.compile(r"\+?[0-9]+")
_NUMBER = re.compile(
    r"[+-]?(inf|infinity|nan|([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)",
    re.IGNORECASE)


class Params:
    """The parameters given to an instance: names and text values."""

    def __init__(self, values: Iterable[Tuple[str, str]]):
        self.values = [(str(k), str(v)) for k, v in values]

    def check(self, info: RuleInfo) -> None:
        """Refuse names the rule does not declare."""
        known = [p.name for p in info.params]
        for name, _ in self.values:
            if name not in known:
                raise ConfigError(
                    f"unknown parameter `{name}` (known: {', '.join(known)})")

    def raw(self, name: str) -> Optional[str]:
        """The text of a parameter, the last given, or None."""
        for k, v in reversed(self.values):
            if k == name:
                return v
        return None

    def text(self, name: str, default: str) -> str:
        v = self.raw(name)
        return default if v is None else v.strip()

    def integer(self, name: str, default: int) -> int:
        """A non-negative integer (`120`), as Rust's `u64`/`usize` parse."""
        v = self.raw(name)
        if v is None:
            return default
        if not _INTEGER.fullmatch(v.strip()):
            raise ConfigError(f"parameter `{name}` = `{v}`: not a non-negative integer")
        return int(v.strip())

    def number(self, name: str, default: float) -> float:
        """A number (`10`, `0.5`, `1e3`), as Rust's `f64` parse."""
        v = self.raw(name)
        if v is None:
            return float(default)
        if not _NUMBER.fullmatch(v.strip()):
            raise ConfigError(f"parameter `{name}` = `{v}`: not a number")
        return float(v.strip())

    def boolean(self, name: str, default: bool) -> bool:
        v = self.raw(name)
        if v is None:
            return default
        if v.strip() not in ("true", "false"):
            raise ConfigError(f"parameter `{name}` = `{v}`: not true or false")
        return v.strip() == "true"


# --- state -----------------------------------------------------------------------

class StateError(ValueError):
    """A saved state the rule does not understand: it starts fresh."""


class StateWriter:
    """Appends values to a state blob: little-endian, as the Rust SDK's."""

    def __init__(self, version: int):
        self.buf = bytearray([version])

    def u64(self, v: int) -> "StateWriter":
        self.buf += struct.pack("<Q", v)
        return self

    def i64(self, v: int) -> "StateWriter":
        self.buf += struct.pack("<q", v)
        return self

    def f64(self, v: float) -> "StateWriter":
        self.buf += struct.pack("<d", v)
        return self

    def bool(self, v: bool) -> "StateWriter":
        self.buf.append(1 if v else 0)
        return self

    def str(self, v: str) -> "StateWriter":
        data = v.encode()
        self.u64(len(data))
        self.buf += data
        return self

    def finish(self) -> bytes:
        return bytes(self.buf)


class StateReader:
    """Reads what `StateWriter` wrote, in order; short input is a
    `StateError`, never a crash."""

    def __init__(self, state: bytes, version: int):
        state = bytes(state)
        if not state:
            raise StateError("empty state")
        if state[0] != version:
            raise StateError(f"state version {state[0]}, expected {version}")
        self.rest = memoryview(state)[1:]

    def _take(self, n: int) -> memoryview:
        if len(self.rest) < n:
            raise StateError("state is truncated")
        head, self.rest = self.rest[:n], self.rest[n:]
        return head

    def u64(self) -> int:
        return struct.unpack("<Q", self._take(8))[0]

    def i64(self) -> int:
        return struct.unpack("<q", self._take(8))[0]

    def f64(self) -> float:
        return struct.unpack("<d", self._take(8))[0]

    def bool(self) -> bool:
        return self._take(1)[0] != 0

    def str(self) -> str:
        n = self.u64()
        try:
            return bytes(self._take(n)).decode()
        except UnicodeDecodeError:
            raise StateError("string is not UTF-8") from None

    def end(self) -> None:
        if len(self.rest):
            raise StateError(f"{len(self.rest)} trailing bytes in state")


# --- windows -------------------------------------------------------------------

class Window:
    """Sum of a per-second quantity over the last `length` seconds
    `t-length+1 ..= t`: a ring indexed by arrival (the host delivers every
    second, silent ones included). Seconds before the first count as 0."""

    def __init__(self, length: int):
        self.slots = [0] * max(1, length)
        self.next = 0
        self.total = 0

    def __len__(self) -> int:
        return len(self.slots)

    def push(self, value: int) -> int:
        """Push the newest second's value; the oldest leaves and is returned,
        so feeding it to another window chains the two."""
        old = self.slots[self.next]
        self.slots[self.next] = value
        self.total += value - old
        self.next = (self.next + 1) % len(self.slots)
        return old

    def sum(self) -> int:
        return self.total

    def mean(self) -> float:
        return self.total / len(self.slots)

    def save(self, w: StateWriter) -> None:
        # Oldest first from position 0, so equal windows save equal bytes
        # wherever the ring stands (the host compares saves over silence).
        w.u64(len(self.slots)).u64(0)
        for s in self.slots[self.next:] + self.slots[:self.next]:
            w.u64(s)

    @staticmethod
    def restore(r: StateReader, length: int) -> "Window":
        saved = r.u64()
        if saved != length:
            raise StateError(f"saved window has {saved} seconds, configured {length}")
        nxt = r.u64()
        if nxt >= max(1, length):
            raise StateError("window position out of range")
        w = Window(length)
        w.slots = [r.u64() for _ in range(length)]
        w.next = nxt
        w.total = sum(w.slots)
        return w


class KeyedWindow:
    """Per-key sums over the last `length` seconds, kept sparsely: only the
    non-zero entries pushed in the window; a key whose sum falls to zero is
    forgotten. Push once per second, silent ones included."""

    def __init__(self, length: int):
        self.length = max(1, length)
        self.seconds: List[List[Tuple[str, int]]] = []
        self.sums: Dict[str, int] = {}

    def __len__(self) -> int:
        return self.length

    def keys(self) -> int:
        return len(self.sums)

    def push(self, entries: Iterable[Tuple[str, int]]) -> None:
        """The newest second's (key, value) entries; zeros are ignored,
        repeated keys added up."""
        if len(self.seconds) == self.length:
            for key, value in self.seconds.pop(0):
                left = self.sums.get(key, 0) - value
                if left:
                    self.sums[key] = left
                else:
                    self.sums.pop(key, None)
        slot: Dict[str, int] = {}
        for key, value in entries:
            if value:
                slot[key] = slot.get(key, 0) + value
                self.sums[key] = self.sums.get(key, 0) + value
        self.seconds.append(list(slot.items()))

    def get(self, key: str) -> int:
        return self.sums.get(key, 0)

    def items(self) -> List[Tuple[str, int]]:
        """Keys with a non-zero sum and their sums, in key order."""
        return sorted(self.sums.items())

    def save(self, w: StateWriter) -> None:
        w.u64(self.length).u64(len(self.seconds))
        for slot in self.seconds:
            w.u64(len(slot))
            for key, value in slot:
                w.str(key).u64(value)

    @staticmethod
    def restore(r: StateReader, length: int) -> "KeyedWindow":
        win = KeyedWindow(length)
        saved = r.u64()
        if saved != win.length:
            raise StateError(f"saved window has {saved} seconds, configured {win.length}")
        held = r.u64()
        if held > saved:
            raise StateError(f"saved window holds {held} of {saved} seconds")
        for _ in range(held):
            slot = []
            for _ in range(r.u64()):
                key, value = r.str(), r.u64()
                win.sums[key] = win.sums.get(key, 0) + value
                slot.append((key, value))
            win.seconds.append(slot)
        win.sums = {k: v for k, v in win.sums.items() if v > 0}
        return win


# --- messages ------------------------------------------------------------------

def utc(time: int) -> str:
    """Unix seconds as `2019-02-07T21:11:00Z` (proleptic Gregorian)."""
    days, secs = divmod(time, 86_400)
    z = days + 719_468
    era, doe = divmod(z, 146_097)
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return (f"{year:04d}-{month:02d}-{day:02d}T"
            f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}Z")


def when(time: int) -> str:
    """Unix seconds for messages: `2019-02-07 21:11:00 UTC (1549573860)`."""
    iso = utc(time)
    return f"{iso[:10]} {iso[11:19]} UTC ({time})"


def fixed(value: float, digits: int) -> str:
    """`value` with `digits` decimals, exactly as Rust's `{:.N}` prints it
    (round half to even on the exact binary value; `inf`, `NaN`)."""
    if value != value:
        return "NaN"
    return f"{value:.{digits}f}"


def decimal(value: float) -> str:
    """A measured value as messages print it: at most two decimals, trailing
    zeros dropped (`10.05`, `9.9`, `3`)."""
    s = fixed(value, 2)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


# --- the rule and its export -----------------------------------------------------

class Rule:
    """An alert rule; one object lives per instance, in its own sandbox.

    Subclasses define `describe()` (a static method: name, description,
    version, parameters with defaults), `configure(params)` (raise
    `ConfigError` to refuse a value; unknown names are refused before it is
    called), `evaluate(second)` (every alert firing after the second),
    `save()` (bytes) and `restore(state)` (raise `StateError` to start
    fresh). An exception anywhere else traps the instance, which the host
    quarantines with the exception's text.
    """

    @staticmethod
    def describe() -> RuleInfo:
        raise NotImplementedError

    def configure(self, params: Params) -> None:
        pass

    def evaluate(self, second) -> List[Alert]:
        raise NotImplementedError

    def save(self) -> bytes:
        return b""

    def restore(self, state: bytes) -> None:
        pass


def export(rule_class):
    """The component's exports for `rule_class`: subclass what this returns
    as `WitWorld` in the app module componentize-py builds. Outside a
    component (native tests) there are no bindings, and it returns `object`."""
    try:
        from componentize_py_types import Err
        from wit_world.imports import types
        import wit_world
    except ImportError:
        return object

    state = {"rule": rule_class()}

    def info():
        i = rule_class.describe()
        return types.RuleInfo(i.name, i.description, i.version,
                              [types.Param(p.name, p.description, p.default_value)
                               for p in i.params])

    class Exports(wit_world.WitWorld):
        def describe(self):
            return info()

        def configure(self, params):
            p = Params(params)
            rule = rule_class()
            try:
                p.check(rule_class.describe())
                rule.configure(p)
            except ValueError as e:
                raise Err(str(e))
            state["rule"] = rule

        def evaluate(self, second):
            return [types.Alert(a.key, a.firing, float(a.value), a.message)
                    for a in state["rule"].evaluate(second)]

        def save(self):
            return bytes(state["rule"].save())

        def restore(self, saved):
            try:
                state["rule"].restore(bytes(saved))
            except ValueError as e:
                raise Err(str(e))

    return Exports
