"""Blessing rules (`eval.thresholds`): `metric<=value`, `metric>=value`, or a bound relative to the
served model (`metric<=baseline*1.05`). Plain Python, no TensorFlow: the CLI validates rules before
heavy imports; `evaluators.blessing` evaluates them."""

from __future__ import annotations

import dataclasses

from trainers.config_values import ConfigError

# Metrics that a rule may compare with the served model: the evaluator recomputes exactly these
# (experiment 1, every feature space; for a single-image model its SIFID, diversity and nearest
# patch distance) for the served model on the candidate's images and seeds.
BASELINE_METRICS = ("fid/", "kid/", "precision/", "recall/", "inception_score/", "sifid/",
                    "diversity/single_image", "nearest_patch/")


@dataclasses.dataclass(frozen=True)
class BaselineBound:
    """A rule's bound relative to the served model: `baseline*scale` or `baseline+offset`."""

    scale: float = 1.0
    offset: float = 0.0

    def of(self, baseline_value: float) -> float:
        """The bound for the served model's value of the metric."""
        return baseline_value * self.scale + self.offset

    def __str__(self) -> str:
        return ("baseline" + (f"*{self.scale:g}" if self.scale != 1.0 else "")
                + (f"{self.offset:+g}" if self.offset else ""))


def parse_threshold(rule: str) -> tuple[str, str, float | BaselineBound]:
    """Parse a blessing rule into (metric, op, bound); ConfigError if malformed.

    `metric<=value` / `metric>=value` give a float bound; `metric<=baseline*F`, `baseline+F`,
    `baseline-F` or `baseline` give a BaselineBound (the served model's value of the same
    metric, scaled or shifted), allowed for the feature-space metrics in BASELINE_METRICS.
    """
    for op in ("<=", ">="):
        if op in rule:
            metric, _, raw = rule.partition(op)
            metric, raw = metric.strip(), raw.strip()
            bound = _parse_bound(raw)
            if metric and bound is not None:
                if isinstance(bound, BaselineBound) and not metric.startswith(BASELINE_METRICS):
                    raise ConfigError(
                        f"eval.thresholds entry {rule!r}: only {', '.join(m + 'SPACE' for m in BASELINE_METRICS)} "
                        "can be compared with the served model (baseline); use a fixed value for "
                        f"{metric!r}")
                return metric, op, bound
            break
    raise ConfigError(f"eval.thresholds entry {rule!r} must look like metric<=value, metric>=value or "
                      "metric<=baseline*1.05 (the served model's value), e.g. fid/domain<=150")


def _parse_bound(raw: str) -> float | BaselineBound | None:
    if raw.startswith("baseline"):
        rest = raw[len("baseline"):].strip()
        try:
            if not rest:
                return BaselineBound()
            if rest[0] == "*":
                return BaselineBound(scale=float(rest[1:]))
            if rest[0] in "+-":
                return BaselineBound(offset=float(rest))
        except ValueError:
            return None
        return None
    try:
        return float(raw)
    except ValueError:
        return None
