"""`error-rate` in Python, the same as the Rust rule (`wasm-rules/error-rate`):
per section, the share of 5xx responses over the last `window` seconds.
Above `threshold` with at least `min_requests` requests in the window fires,
keyed by section; at or below the threshold, or with too few requests to
judge, resolves. Its state is the Rust rule's byte for byte."""

from logmon_rule import (Alert, ConfigError, Rule, RuleInfo, StateReader,
                         StateWriter, Window, export, fixed, param, when)

STATE_VERSION = 1


class SectionWindow:
    def __init__(self, window, requests=None, errors=None, firing=False):
        self.requests = Window(window) if requests is None else requests
        self.errors = Window(window) if errors is None else errors
        self.firing = firing


class ErrorRate(Rule):
    def __init__(self):
        self.threshold = 0.1
        self.window = 60
        self.min_requests = 20
        self.sections = {}

    @staticmethod
    def describe():
        return RuleInfo(
            "error-rate",
            "Share of 5xx responses per section over a window above a threshold",
            "0.1.0",
            [param("threshold", "share of 5xx responses (0..1) that fires", 0.1),
             param("window", "seconds looked back, ending at the evaluated second", 60),
             param("min_requests", "requests in the window needed to judge a section", 20)])

    def configure(self, params):
        threshold = params.number("threshold", 0.1)
        window = params.integer("window", 60)
        min_requests = params.integer("min_requests", 20)
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be within 0 ..= 1, got {threshold}")
        if window == 0 or window > 86_400:
            raise ConfigError(f"window must be 1 ..= 86400 seconds, got {window}")
        self.threshold, self.window = threshold, window
        self.min_requests = max(min_requests, 1)
        self.sections = {}

    def message(self, section, firing, share, requests, time):
        pct = fixed(share * 100.0, 1)
        at = when(time)
        if firing:
            return (f"High error rate on {section} - {pct}% 5xx over {self.window} s, "
                    f"triggered at {at}")
        if requests < self.min_requests:
            return (f"Error rate on {section} no longer judged - {requests} requests over "
                    f"{self.window} s (min {self.min_requests}), resolved at {at}")
        return (f"Error rate on {section} recovered - {pct}% 5xx over {self.window} s, "
                f"recovered at {at}")

    def evaluate(self, second):
        now = {}
        for s in second.sections:
            now.setdefault(s.section, (s.hits, s.statuses.server_error))
            if s.section not in self.sections:
                self.sections[s.section] = SectionWindow(self.window)
        alerts = []
        # Sections in key order, as the Rust rule's BTreeMap.
        for name in sorted(self.sections):
            w = self.sections[name]
            hits, errors = now.get(name, (0, 0))
            w.requests.push(hits)
            w.errors.push(errors)
            requests = w.requests.sum()
            share = 0.0 if requests == 0 else w.errors.sum() / requests
            was = w.firing
            w.firing = requests >= self.min_requests and share > self.threshold
            if w.firing or was:
                alerts.append(Alert(name, w.firing, share,
                                    self.message(name, w.firing, share, requests, second.time)))
            if requests == 0 and not w.firing:
                del self.sections[name]
        return alerts

    def save(self):
        w = StateWriter(STATE_VERSION)
        w.u64(len(self.sections))
        for name in sorted(self.sections):
            s = self.sections[name]
            w.str(name).bool(s.firing)
            s.requests.save(w)
            s.errors.save(w)
        return w.finish()

    def restore(self, state):
        r = StateReader(state, STATE_VERSION)
        sections = {}
        for _ in range(r.u64()):
            name, firing = r.str(), r.bool()
            requests = Window.restore(r, self.window)
            errors = Window.restore(r, self.window)
            sections[name] = SectionWindow(self.window, requests, errors, firing)
        r.end()
        self.sections = sections


class WitWorld(export(ErrorRate)):
    pass
