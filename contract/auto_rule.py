"""The auto-mode rule: calibrated class probabilities -> what to run, and why.

Pure and torch-free: the service, `tap-train evaluate` and `tap-train calibrate` all decide
with this one function. A bundle carries the rule its classifier was calibrated for
(`auto_rule` in the manifest); service settings may override single thresholds.

Sending a clear photo to a prompt is the costliest mistake (the restoration can stain a
clean sky), so the rule abstains to `clean` unless a weather is likely enough:
1. p(clean) >= clean_threshold                      -> clean ("nothing to remove");
2. the likeliest weather has p < min_weather_prob   -> clean ("not sure");
3. the runner-up has p >= mixture_min_prob and trails the top one by <= mixture_margin
   -> a mixture of both, weights renormalised to sum to 1;
4. otherwise the likeliest weather.
"""

from dataclasses import dataclass, field, fields, replace

CLEAN = "clean"


@dataclass(frozen=True)
class Decision:
    """What to run: prompt weights per task (empty = return the photo untouched)."""

    label: str  # "rain", "clean", "rain+haze"
    weights: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None  # auto mode only
    probabilities: dict[str, float] | None = None  # auto mode only
    reason: str = ""  # auto mode only: one line a user can read

    @property
    def clean(self) -> bool:
        return not self.weights

    @property
    def mixture(self) -> dict[str, float] | None:
        return dict(self.weights) if len(self.weights) > 1 else None


@dataclass(frozen=True)
class AutoRule:
    """Thresholds of the auto-mode rule (see the module docstring). The defaults are the rule of
    bundles calibrated before `auto_rule` existed; mixture_margin < 0 disables mixtures."""

    clean_threshold: float = 0.6
    min_weather_prob: float = 0.0
    mixture_min_prob: float = 0.3
    mixture_margin: float = 0.2

    def __post_init__(self) -> None:
        for name in ("clean_threshold", "min_weather_prob", "mixture_min_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"auto rule {name} must be in [0, 1], got {getattr(self, name)}")
        if self.mixture_margin > 1.0:
            raise ValueError(f"auto rule mixture_margin must be <= 1, got {self.mixture_margin}")

    @classmethod
    def from_dict(cls, data: dict | None) -> "AutoRule":
        """A manifest's `auto_rule`; missing keys keep the defaults, unknown keys are errors."""
        data = dict(data or {})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown auto rule keys: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()})

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def overridden(self, **values: float | None) -> "AutoRule":
        """This rule with the given thresholds replaced; None keeps the rule's own value."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def decide(self, probabilities: dict[str, float], tasks: list[str]) -> Decision:
        """Apply the rule over the classes that have a prompt (`tasks`)."""
        p_clean = probabilities.get(CLEAN, 0.0)
        if not tasks:
            return Decision(CLEAN, {}, p_clean, probabilities, "no weather prompt is loaded")
        if p_clean >= self.clean_threshold:
            reason = f"nothing to remove: p(clean) = {p_clean:.2f} >= {self.clean_threshold:.2f}"
            return Decision(CLEAN, {}, p_clean, probabilities, reason)
        ranked = sorted(tasks, key=lambda t: probabilities[t], reverse=True)
        top = ranked[0]
        p_top = probabilities[top]
        if p_top < self.min_weather_prob:
            reason = f"not sure: the likeliest weather, {top}, has p = {p_top:.2f} < {self.min_weather_prob:.2f}"
            return Decision(CLEAN, {}, p_clean, probabilities, reason)
        if len(ranked) > 1:
            second = ranked[1]
            p_second = probabilities[second]
            if p_second >= self.mixture_min_prob and p_top - p_second <= self.mixture_margin:
                total = p_top + p_second
                weights = {top: p_top / total, second: p_second / total}
                reason = f"{top} (p = {p_top:.2f}) and {second} (p = {p_second:.2f}) are both likely"
                return Decision(f"{top}+{second}", weights, total, probabilities, reason)
        return Decision(top, {top: 1.0}, p_top, probabilities, f"{top}: p = {p_top:.2f}")
