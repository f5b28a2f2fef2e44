"""Blessing: the model is pushed only when every threshold rule holds.

Rules are strings `METRIC<=VALUE` or `METRIC>=VALUE` (config `eval.thresholds`, parsed by
`trainers.thresholds.parse_threshold`), e.g. `fid/domain<=150`, `precision/efficientnet_lite0>=0.2`,
`inpainting/square/model/psnr>=12`. METRIC is a flat name from `flatten_metrics`:
- `fid/SPACE`, `kid/SPACE`, `kid_std/SPACE`, `inception_score/SPACE`, `inception_score_std/SPACE`,
  `precision/SPACE`, `recall/SPACE` from `metrics["feature_spaces"][SPACE]`;
- every other number by its path with `/`, e.g. `downstream/rows/svm/model_finest_grid/1000` is
  shortened to `downstream/svm/model_finest_grid/1000`, `inpainting/masks/square/model/error` to
  `inpainting/square/model/error`, `diversity/within_start_mean`;
- `collapse/collapsed`: 1 when the collapse rule fired, else 0 (`collapse/collapsed<=0` refuses
  a collapsed model), beside the rule's ratios such as `collapse/fine_detail_ratio`.
A metric that is missing or not a finite number fails its rule (with the reason). No rules at
all means blessed (nothing to violate); the result says so.

Rules against the served model (`fid/domain<=baseline*1.05`; TFX's model-validation pattern) read
the served model's value from `metrics["baseline_model"]["feature_spaces"]` (or, for a single-image
model, its flat `metrics["baseline_model"]["metrics"]`, e.g. `sifid/efficientnet_lite0`),
recomputed by the evaluator on the candidate's images and seeds. With no served model yet such a rule passes with
that reason, so the first run is blessed by the absolute rules alone.
"""

from __future__ import annotations

import math

from trainers.thresholds import BaselineBound, parse_threshold

_SHORTEN = {"downstream/rows/": "downstream/", "inpainting/masks/": "inpainting/",
            "denoising/levels/": "denoising/", "translation/spaces/": "translation/",
            "memorization/spaces/": "memorization/"}


def flatten_metrics(metrics: dict) -> dict[str, float | None]:
    """Flat `{name: number}` view of a metrics dict (schema in `evaluators.report`).

    Already-flat keys (containing `/`) at the top level are kept as they are.
    """
    flat: dict = {}
    for key, value in metrics.items():
        if key == "feature_spaces" and isinstance(value, dict):
            for space, values in value.items():
                for name, number in (values or {}).items():
                    if _is_number(number) or number is None:
                        flat[f"{name}/{space}"] = number
        elif key in ("blessing", "schema_version", "notes", "model", "config", "baseline_model"):
            continue
        else:
            _walk(value, key, flat)
    collapsed = (metrics.get("collapse") or {}).get("collapsed") if isinstance(metrics.get("collapse"), dict) else None
    if isinstance(collapsed, bool):
        flat["collapse/collapsed"] = float(collapsed)
    for long, short in _SHORTEN.items():
        for name in [n for n in flat if n.startswith(long)]:
            flat[short + name[len(long):]] = flat.pop(name)
    return flat


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or (
        hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0)


def _walk(value, path: str, flat: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(v, f"{path}/{k}", flat)
    elif _is_number(value):
        flat[path] = float(value)


def evaluate_thresholds(thresholds, metrics: dict) -> dict:
    """Check every rule against the metrics.

    Args:
      thresholds: iterable of rule strings (see the module docstring).
      metrics: a nested metrics dict (with `baseline_model` when a model is being served) or an
        already-flat {name: number} dict.

    Returns:
      {"blessed": bool, "checks": [{"rule", "metric", "op", "threshold" (the bound used, None for
      a baseline rule without a served model), "value", "baseline" (the served model's value, for
      baseline rules), "passed", "reason"}], "available": sorted flat metric names,
      "baseline_version": the served version compared with, or None}. Raises ConfigError (a
      ValueError) on a malformed rule.
    """
    flat = flatten_metrics(metrics)
    served = metrics.get("baseline_model") if isinstance(metrics.get("baseline_model"), dict) else None
    served_flat = (flatten_metrics({"feature_spaces": served.get("feature_spaces") or {},
                                    **(served.get("metrics") or {})}) if served else {})
    checks = []
    for rule in thresholds:
        metric, op, bound = parse_threshold(rule)
        value, baseline, threshold = flat.get(metric), None, bound
        if isinstance(bound, BaselineBound):
            baseline = served_flat.get(metric)
            threshold = None if baseline is None else bound.of(float(baseline))
        if isinstance(bound, BaselineBound) and served is None:
            passed, reason = True, ("no served model yet: this run is judged by the absolute rules "
                                    "alone")
        elif metric not in flat:
            passed, reason = False, (f"metric {metric!r} was not computed; available metrics "
                                     f"include {sorted(flat)[:12]}")
        elif value is None or not math.isfinite(float(value)):
            passed, reason = False, f"metric {metric!r} is not a finite number ({value})"
        elif threshold is None or not math.isfinite(threshold):
            passed, reason = False, (f"the served model (version {served.get('version')}) has no "
                                     f"finite {metric!r} ({baseline}); {served.get('error', '')}").rstrip("; ")
        else:
            value = float(value)
            passed = value <= threshold if op == "<=" else value >= threshold
            against = (f" = {bound} with the served version {served.get('version')} at "
                       f"{float(baseline):.6g}" if isinstance(bound, BaselineBound) else "")
            reason = "" if passed else f"{metric}={value:.6g} violates {op} {threshold:g}{against}"
        checks.append({"rule": rule, "metric": metric, "op": op, "threshold": threshold,
                       "value": value, "baseline": baseline, "passed": passed, "reason": reason})
    blessed = all(c["passed"] for c in checks)
    result = {"blessed": blessed, "checks": checks, "available": sorted(flat),
              "baseline_version": served.get("version") if served else None}
    if not checks:
        result["note"] = "no thresholds configured: blessed by default"
    return result


def summary(result: dict) -> str:
    """One line: why the model was (not) blessed, e.g. for the pusher's log."""
    failed = [c["reason"] for c in result.get("checks", []) if not c["passed"]]
    if failed:
        return "not blessed: " + "; ".join(failed)
    served = result.get("baseline_version")
    return "blessed" + (f" (compared with served version {served})" if served is not None else "")
