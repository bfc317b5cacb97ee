"""`high-traffic` in Python: the exercise's alert, the same as the Rust rule
(`wasm-rules/high-traffic`). At each second `t`, the average hits per second
over `t-window+1 ..= t` above `threshold` fires; below it resolves; equal to
it changes nothing. Silent seconds count as zero hits, so a recovery during
silence happens at the second it is due. Its state is the Rust rule's
byte for byte."""

from logmon_rule import (Alert, ConfigError, Rule, RuleInfo, StateReader,
                         StateWriter, Window, decimal, export, param, when)

STATE_VERSION = 1


class HighTraffic(Rule):
    def __init__(self):
        self.threshold = 10.0
        self.window = Window(120)
        # When firing: (the second it fired, the message it fired with).
        self.fired = None

    @staticmethod
    def describe():
        return RuleInfo(
            "high-traffic",
            "Average requests per second over a window above a threshold",
            "0.1.0",
            [param("threshold", "requests per second that fire the alert", 10),
             param("window", "seconds averaged, ending at the evaluated second", 120)])

    def configure(self, params):
        threshold = params.number("threshold", 10.0)
        window = params.integer("window", 120)
        if not (threshold == threshold and threshold != float("inf") and threshold >= 0):
            raise ConfigError(f"threshold must be a non-negative number, got {threshold}")
        if window == 0 or window > 86_400:
            raise ConfigError(f"window must be 1 ..= 86400 seconds, got {window}")
        self.threshold = threshold
        self.window = Window(window)

    def evaluate(self, second):
        self.window.push(second.hits)
        value = self.window.mean()
        if self.fired is None:
            if value > self.threshold:
                message = (f"High traffic generated an alert - hits = {decimal(value)}, "
                           f"triggered at {when(second.time)}")
                self.fired = (second.time, message)
                return [Alert.fire("", value, message)]
            return []
        if value < self.threshold:
            self.fired = None
            return [Alert.resolve("", value,
                                  f"High traffic alert recovered - hits = {decimal(value)}, "
                                  f"recovered at {when(second.time)}")]
        return [Alert.fire("", value, self.fired[1])]

    def save(self):
        w = StateWriter(STATE_VERSION)
        w.f64(self.threshold)
        self.window.save(w)
        if self.fired is None:
            w.bool(False)
        else:
            w.bool(True).i64(self.fired[0]).str(self.fired[1])
        return w.finish()

    def restore(self, state):
        r = StateReader(state, STATE_VERSION)
        r.f64()  # the threshold it was saved with
        window = Window.restore(r, len(self.window))
        fired = (r.i64(), r.str()) if r.bool() else None
        r.end()
        self.window, self.fired = window, fired


class WitWorld(export(HighTraffic)):
    pass
