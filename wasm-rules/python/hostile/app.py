"""`hostile` in Python: misbehaves on purpose, for the host's sandbox tests
(never shipped). `mode`: `raise` raises an exception, `spin` loops forever,
`hog` allocates without bound, `calm` behaves; `after`: the good
evaluations before it misbehaves."""

from logmon_rule import Rule, RuleInfo, export, param


class Hostile(Rule):
    def __init__(self):
        self.mode, self.after, self.seen = "calm", 0, 0

    @staticmethod
    def describe():
        return RuleInfo("hostile-py", "Misbehaves on purpose (sandbox tests)", "0.1.0",
                        [param("mode", "raise | spin | hog | calm", "calm"),
                         param("after", "good evaluations before misbehaving", 0)])

    def configure(self, params):
        self.mode = params.text("mode", "calm")
        self.after = params.integer("after", 0)

    def evaluate(self, second):
        self.seen += 1
        if self.seen <= self.after:
            return []
        if self.mode == "raise":
            raise RuntimeError(f"hostile rule raising at second {second.time}")
        if self.mode == "spin":
            x = second.hits
            while True:
                x = (x * 31 + 1) % 1_000_003
        if self.mode == "hog":
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))
        return []

    def save(self):
        return self.seen.to_bytes(8, "little")

    def restore(self, state):
        self.seen = int.from_bytes(state, "little")


class WitWorld(export(Hostile)):
    pass
