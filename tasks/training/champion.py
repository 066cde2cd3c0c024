"""The champion gate: thresholds, a paired bootstrap, a written decision, and an alias moved by compare-and-swap.

Pure Python and numpy (no TensorFlow): the retrain flow evaluates the candidate and the current
champion on the same evaluation samples, then asks :func:`decide` whether to promote. The anchors
are TFX/TFMA's blessing (value and change thresholds against a baseline) and MLflow's ``champion``
alias, with their users' complaints answered:

* a decision is written in every case (first model, no thresholds configured, promoted, refused,
  forced, unchanged), each with its reasons;
* a change threshold has a direction and an *absolute or relative* margin, and the margin may be
  negative: ``macro_f1`` "not worse than −0.01" is ``change_abs = -0.01``;
* NaN is never a pass (a NaN metric fails its threshold and says so), and a relative change
  against a zero baseline is defined by its limit (improvement 0 → 0, > 0 → +inf, < 0 → −inf)
  instead of failing as a division by zero;
* promotion also needs the paired difference to be *credible*: the lower end of a paired bootstrap
  interval over the evaluation samples must clear the same margin the point estimate has to clear
  (a non-inferiority test for negative margins, superiority for positive ones); the interval is in
  the decision;
* ``--force`` promotes anyway and records who asked and what the gate would have said.

Thresholds are data (a task's config), e.g.::

    {"macro_f1": {"lower_bound": 0.5, "change": {"absolute": -0.01}},
     "rmse_px": {"direction": "lower", "upper_bound": 25.0, "change": {"relative": 0.0}}}

The alias ``{root}/models/{task}/champion`` holds one model version. :func:`move_champion` changes
it only if it still holds what the caller compared against (compare-and-swap under a file lock,
then an atomic rename), and appends the move to ``champion.history.jsonl``: two retrains racing
for the alias cannot both promote; the loser gets :class:`~schemas.errors.ChampionMovedError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from filelock import FileLock, Timeout
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import ChampionMovedError, ConfigError, LockError
from storage.fs import filesystem, join, write_bytes_atomic
from storage.layout import champion_history_path, champion_path, model_dir

Direction = Literal["higher", "lower"]
Status = Literal["first_model", "no_thresholds", "promoted", "refused", "forced", "unchanged"]

EXIT_OK = 0
"""Exit code for CI: the candidate was promoted, or nothing changed (the champion was reused)."""
EXIT_REFUSED = 3
"""Exit code for CI: the gate refused the candidate (a regression, or a bound not met)."""

_THRESHOLD_KEYS = {"direction", "lower_bound", "upper_bound", "change"}
_CHANGE_KEYS = {"absolute", "relative", "credible"}


@dataclass(frozen=True)
class Threshold:
    """What one metric must satisfy for a candidate to be promoted.

    Attributes:
        metric: Metric name, as in ``metrics.json``.
        direction: ``higher`` (accuracy, PCK, F1, AP) or ``lower`` (RMSE, loss) is better.
        lower_bound: The candidate's value must be >= this (absolute bound), if set.
        upper_bound: The candidate's value must be <= this, if set.
        change_abs: Required improvement over the champion in metric units (``-0.01``: not worse
            than 0.01; ``0.0``: not worse; ``0.02``: at least 0.02 better), if set.
        change_rel: Required improvement as a fraction of the champion's magnitude (``-0.05``: not
            more than 5 % worse), if set. With both margins set, both must hold.
        credible: Also require the paired bootstrap interval's lower end to clear the margin.
    """

    metric: str
    direction: Direction = "higher"
    lower_bound: float | None = None
    upper_bound: float | None = None
    change_abs: float | None = None
    change_rel: float | None = None
    credible: bool = True

    @property
    def has_change(self) -> bool:
        return self.change_abs is not None or self.change_rel is not None


def parse_thresholds(config: Mapping[str, Any] | None) -> list[Threshold]:
    """Thresholds from a task's config mapping (metric → spec), validated.

    Args:
        config: ``{metric: {"direction": "higher"|"lower", "lower_bound": x, "upper_bound": x,
            "change": {"absolute": m, "relative": r, "credible": bool}}}``; None or ``{}``: none.

    Returns:
        One :class:`Threshold` per metric, sorted by metric name.

    Raises:
        ConfigError: An unknown key, a bad direction or a non-numeric bound.
    """
    out: list[Threshold] = []
    for metric, spec in sorted((config or {}).items()):
        if not isinstance(spec, Mapping):
            raise ConfigError(f"threshold for {metric!r} must be a mapping, got {spec!r}")
        unknown = set(spec) - _THRESHOLD_KEYS
        if unknown:
            raise ConfigError(f"threshold for {metric!r}: unknown keys {sorted(unknown)}", hint=f"accepted: {sorted(_THRESHOLD_KEYS)}")
        direction = spec.get("direction", "higher")
        if direction not in ("higher", "lower"):
            raise ConfigError(f"threshold for {metric!r}: direction must be 'higher' or 'lower', got {direction!r}")
        change = spec.get("change") or {}
        if not isinstance(change, Mapping) or set(change) - _CHANGE_KEYS:
            raise ConfigError(f"threshold for {metric!r}: change must be a mapping with keys {sorted(_CHANGE_KEYS)}, got {change!r}")
        out.append(
            Threshold(
                metric=str(metric),
                direction=direction,
                lower_bound=_number(metric, "lower_bound", spec.get("lower_bound")),
                upper_bound=_number(metric, "upper_bound", spec.get("upper_bound")),
                change_abs=_number(metric, "change.absolute", change.get("absolute")),
                change_rel=_number(metric, "change.relative", change.get("relative")),
                credible=bool(change.get("credible", True)),
            )
        )
    return out


def _number(metric: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold for {metric!r}: {key} must be a number, got {value!r}") from None
    if math.isnan(number):
        raise ConfigError(f"threshold for {metric!r}: {key} is NaN")
    return number


@dataclass(frozen=True)
class Interval:
    """A paired bootstrap interval of the improvement (candidate better than champion is positive).

    Attributes:
        improvement: Point estimate on the full evaluation set.
        low: Lower end of the interval.
        high: Upper end.
        confidence: Two-sided confidence level, e.g. 0.95.
        resamples: Bootstrap resamples drawn.
        samples: Evaluation samples resampled.
    """

    improvement: float
    low: float
    high: float
    confidence: float
    resamples: int
    samples: int


def paired_bootstrap(
    metric: Callable[[np.ndarray], tuple[float, float]],
    num_samples: int,
    direction: Direction = "higher",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile interval of the candidate's improvement over the champion, resampling samples in pairs.

    Both models are scored on the *same* resampled evaluation samples each time, so the
    per-sample correlation between them is kept (a much tighter interval than two independent ones).

    Args:
        metric: ``metric(indices)`` → ``(candidate value, champion value)`` on the evaluation
            samples ``indices`` (``(n,) int64``, with repeats). Works for any metric (macro-F1, AP...).
        num_samples: Evaluation samples (n).
        direction: Whether higher or lower values are better.
        resamples: Bootstrap resamples.
        confidence: Two-sided level of the interval.
        seed: Seed of the resampling (the decision is reproducible).

    Returns:
        The :class:`Interval`; NaN ends if the metric is NaN on every resample.

    Example:
        With per-sample correctness ``cand = [1, 1, 1, 0]`` and ``champ = [1, 0, 1, 0]`` and
        ``metric = lambda i: (cand[i].mean(), champ[i].mean())``, the improvement is 0.25.
    """
    if num_samples <= 0:
        raise ConfigError("paired bootstrap needs at least one evaluation sample")
    sign = 1.0 if direction == "higher" else -1.0
    full = metric(np.arange(num_samples))
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples, dtype=np.float64)
    for b in range(resamples):
        cand, champ = metric(rng.integers(0, num_samples, num_samples))
        diffs[b] = sign * (cand - champ)
    alpha = (1.0 - confidence) / 2.0
    finite = diffs[np.isfinite(diffs)]
    low, high = (float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))) if finite.size else (math.nan, math.nan)
    return Interval(sign * (full[0] - full[1]), low, high, confidence, resamples, num_samples)


def mean_metric(candidate_scores: np.ndarray, champion_scores: np.ndarray) -> Callable[[np.ndarray], tuple[float, float]]:
    """A :func:`paired_bootstrap` metric for per-sample scores averaged (accuracy, PCK per sample, OKS).

    Args:
        candidate_scores: ``(n,) float`` per-sample score of the candidate (NaN: not scored).
        champion_scores: ``(n,) float`` of the champion on the same samples, same order.
    """
    cand = np.asarray(candidate_scores, dtype=np.float64)
    champ = np.asarray(champion_scores, dtype=np.float64)
    if cand.shape != champ.shape:
        raise ConfigError(f"candidate and champion scores differ in shape: {cand.shape} vs {champ.shape}")

    def metric(idx: np.ndarray) -> tuple[float, float]:
        with warnings.catch_warnings():  # a resample of only unscored samples is NaN, not a warning per resample
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(np.nanmean(cand[idx])), float(np.nanmean(champ[idx]))

    return metric


@dataclass(frozen=True)
class Check:
    """One threshold checked: what was compared, what was required, whether it held and why.

    Attributes:
        metric: Metric name.
        kind: ``lower_bound``, ``upper_bound``, ``change`` or ``credible``.
        passed: Whether it held.
        reason: One sentence a person reads in the decision.
        value: The candidate's value.
        baseline: The champion's value (change checks).
        improvement: Candidate's improvement over the champion (positive = better), change checks.
        required: The improvement (or bound) it had to reach.
        interval: The paired bootstrap interval (credible checks).
    """

    metric: str
    kind: str
    passed: bool
    reason: str
    value: float | None = None
    baseline: float | None = None
    improvement: float | None = None
    required: float | None = None
    interval: Interval | None = None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else ("NaN" if math.isnan(x) else f"{x:.4g}")


def check_bounds(th: Threshold, value: float | None) -> list[Check]:
    """The absolute bounds of ``th`` on the candidate's ``value`` (NaN or missing fails)."""
    out: list[Check] = []
    for kind, bound in (("lower_bound", th.lower_bound), ("upper_bound", th.upper_bound)):
        if bound is None:
            continue
        if value is None or math.isnan(value):
            out.append(Check(th.metric, kind, False, f"{th.metric} is {'missing' if value is None else 'NaN'}: cannot meet {kind} {bound:g}", value, required=bound))
            continue
        ok = value >= bound if kind == "lower_bound" else value <= bound
        op = ">=" if kind == "lower_bound" else "<="
        out.append(Check(th.metric, kind, ok, f"{th.metric} = {_fmt(value)} {'meets' if ok else 'fails'} {kind} ({op} {bound:g})", value, required=bound))
    return out


def required_improvement(th: Threshold, baseline: float) -> float:
    """The improvement (positive = better) a candidate must reach over ``baseline``: the stricter margin.

    A relative margin is ``change_rel × |baseline|``. Against a zero baseline the relative change
    is taken at its limit (any improvement +inf, none 0, any regression −inf): a positive margin then
    needs some improvement, a zero or negative one needs no regression.
    """
    margins = []
    if th.change_abs is not None:
        margins.append(th.change_abs)
    if th.change_rel is not None:
        if baseline != 0:
            margins.append(th.change_rel * abs(baseline))
        else:  # relative change from 0 is -inf, 0 or +inf: a positive margin needs any improvement, else no regression
            margins.append(math.ulp(0.0) if th.change_rel > 0 else 0.0)
    return max(margins) if margins else -math.inf


def check_change(th: Threshold, value: float | None, baseline: float | None, interval: Interval | None = None) -> list[Check]:
    """The change threshold of ``th``: point estimate, then (if ``th.credible``) the bootstrap interval.

    Args:
        th: The threshold (with ``change_abs`` and/or ``change_rel``).
        value: The candidate's metric.
        baseline: The champion's metric on the same evaluation data.
        interval: The paired bootstrap interval of the improvement, when one was computed.

    Returns:
        The ``change`` check, plus a ``credible`` check when ``th.credible``.
    """
    if not th.has_change:
        return []
    if value is None or baseline is None or math.isnan(value) or math.isnan(baseline):
        what = "candidate" if value is None or math.isnan(value) else "champion"
        return [Check(th.metric, "change", False, f"{th.metric}: the {what}'s value is missing or NaN, so no change can be measured", value, baseline)]
    sign = 1.0 if th.direction == "higher" else -1.0
    improvement = sign * (value - baseline)
    need = required_improvement(th, baseline)
    ok = improvement >= need
    better = "higher" if th.direction == "higher" else "lower"
    rel = f" ({improvement / abs(baseline):+.2%} of the champion)" if baseline != 0 else ""
    reason = (
        f"{th.metric} {_fmt(value)} vs champion {_fmt(baseline)} ({better} is better): improvement {improvement:+.4g}{rel}, "
        f"required >= {need:+.4g}: {'met' if ok else 'regression'}"
    )
    out = [Check(th.metric, "change", ok, reason, value, baseline, improvement, need)]
    if th.credible:
        if interval is None or math.isnan(interval.low):
            out.append(Check(th.metric, "credible", False, f"{th.metric}: no bootstrap interval could be computed", value, baseline, improvement, need, interval))
        else:
            cred = interval.low >= need
            out.append(
                Check(
                    th.metric,
                    "credible",
                    cred,
                    f"{th.metric}: {interval.confidence:.0%} paired bootstrap interval of the improvement "
                    f"[{interval.low:+.4g}, {interval.high:+.4g}] ({interval.resamples} resamples of {interval.samples}) "
                    f"{'clears' if cred else 'does not clear'} {need:+.4g}",
                    value,
                    baseline,
                    improvement,
                    need,
                    interval,
                )
            )
    return out


@dataclass(frozen=True)
class Decision:
    """What the gate decided and why: written as ``decision.json`` on every run.

    Attributes:
        task: Training task.
        candidate: The candidate model version.
        champion: The champion it was compared with (None: there was none).
        status: ``first_model``, ``no_thresholds``, ``promoted``, ``refused``, ``forced`` or ``unchanged``.
        promote: Whether the alias should move to the candidate.
        reasons: Sentences a person reads, most important first.
        checks: Every check made.
        candidate_metrics: The candidate's metrics on the evaluation data.
        champion_metrics: The champion's metrics re-scored on the same data (None: no champion).
        forced_by: Who asked for a forced promotion (None unless forced).
        gate_status: What the gate said before a force (None unless forced).
        decided_at: UTC time, ISO 8601.
    """

    task: str
    candidate: str
    champion: str | None
    status: Status
    promote: bool
    reasons: tuple[str, ...]
    checks: tuple[Check, ...] = ()
    candidate_metrics: Mapping[str, Any] = field(default_factory=dict)
    champion_metrics: Mapping[str, Any] | None = None
    forced_by: str | None = None
    gate_status: str | None = None
    decided_at: str = ""

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_OK` when promoted or unchanged, :data:`EXIT_REFUSED` when the gate said no."""
        return EXIT_OK if self.promote or self.status in ("unchanged", "no_thresholds") else EXIT_REFUSED

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["exit_code"] = self.exit_code
        return _finite_json(out)


def _finite_json(obj: Any) -> Any:
    """NaN/inf as strings: ``decision.json`` stays valid JSON for every reader."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_json(v) for v in obj]
    return obj


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def decide(
    task: str,
    candidate: str,
    candidate_metrics: Mapping[str, Any],
    thresholds: Sequence[Threshold],
    champion: str | None = None,
    champion_metrics: Mapping[str, Any] | None = None,
    intervals: Mapping[str, Interval] | None = None,
    force: bool = False,
    actor: str | None = None,
) -> Decision:
    """Decide whether ``candidate`` replaces ``champion``.

    Args:
        task: Training task.
        candidate: Candidate model version.
        candidate_metrics: Its metrics on the task's evaluation split.
        thresholds: The task's thresholds (may be empty).
        champion: Current champion version (None: first model).
        champion_metrics: The champion re-scored on the same evaluation data.
        intervals: Paired bootstrap interval per metric (for credible change checks).
        force: Promote whatever the gate says (recorded with ``actor``).
        actor: Who forced (default: ``$GITHUB_ACTOR`` or the login name).

    Returns:
        The :class:`Decision` (nothing is written or moved here).
    """
    now = _now()
    base = {"task": task, "candidate": candidate, "champion": champion, "candidate_metrics": dict(candidate_metrics),
            "champion_metrics": dict(champion_metrics) if champion_metrics is not None else None, "decided_at": now}
    if champion is not None and champion == candidate:
        return Decision(status="unchanged", promote=False, reasons=(f"{candidate} is already the champion: nothing to decide",), **base)
    checks: list[Check] = []
    for th in thresholds:
        checks.extend(check_bounds(th, _value(candidate_metrics, th.metric)))
        if champion is not None:
            iv = (intervals or {}).get(th.metric)
            checks.extend(check_change(th, _value(candidate_metrics, th.metric), _value(champion_metrics or {}, th.metric), iv))
    failed = [c for c in checks if not c.passed]
    if champion is None:
        status: Status = "refused" if failed else "first_model"
        reasons = [c.reason for c in failed] if failed else [f"no champion yet: {candidate} becomes the first champion" + (" (its bounds hold)" if checks else "")]
    elif not thresholds:
        status = "no_thresholds"
        reasons = [f"no thresholds are configured for {task}: {candidate} is not promoted over {champion} automatically",
                   "add thresholds to the task's config, or promote by hand (`posepipe models promote` / `--force`)"]
    elif failed:
        status = "refused"
        reasons = [c.reason for c in failed]
    else:
        status = "promoted"
        reasons = [f"{candidate} meets every threshold against {champion}"] + [c.reason for c in checks]
    promote = status in ("first_model", "promoted")
    if force and not promote:
        who = actor or os.environ.get("GITHUB_ACTOR") or _login()
        return Decision(status="forced", promote=True, reasons=(f"forced by {who}; the gate said {status}", *reasons), checks=tuple(checks),
                        forced_by=who, gate_status=status, **base)
    return Decision(status=status, promote=promote, reasons=tuple(reasons), checks=tuple(checks), **base)


def _value(metrics: Mapping[str, Any], name: str) -> float | None:
    v = metrics.get(name)
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def write_decision(path: str, decision: Decision) -> None:
    """Write ``decision.json`` atomically (valid JSON: NaN/inf as strings)."""
    fs, p = filesystem(path)
    write_bytes_atomic(fs, p, (json.dumps(decision.to_dict(), indent=2, sort_keys=True) + "\n").encode())


# --- the alias --------------------------------------------------------------------------------------


def read_champion(root: str, task: str) -> str | None:
    """The model version the ``champion`` alias of ``task`` holds, or None."""
    fs, base = filesystem(root)
    try:
        with fs.open(champion_path(base, task), "rb") as fh:
            return fh.read().decode().strip() or None
    except FileNotFoundError:
        return None


def champion_history(root: str, task: str) -> list[dict[str, Any]]:
    """Every move of the alias, oldest first (``from``, ``to``, ``action``, ``reason``, ``actor``, ``at``)."""
    fs, base = filesystem(root)
    try:
        with fs.open(champion_history_path(base, task), "rb") as fh:
            return [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def _alias_lock(fs: Any, base: str, task: str, timeout_s: float) -> Iterator[None]:
    if not isinstance(fs, LocalFileSystem):
        yield  # no portable lock on object stores: the rename is still atomic, the compare is best effort
        return
    os.makedirs(model_dir(base, task), exist_ok=True)
    lock = FileLock(join(model_dir(base, task), ".champion.lock"), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise LockError(f"the champion alias of {task!r} is locked by another process", hint="retry in a moment") from None
    try:
        yield
    finally:
        lock.release()


def move_champion(
    root: str,
    task: str,
    expected: str | None,
    new: str,
    action: Literal["promote", "rollback", "force"] = "promote",
    reason: str = "",
    actor: str | None = None,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Move the ``champion`` alias of ``task`` from ``expected`` to ``new``, atomically.

    Args:
        root: Storage root.
        task: Training task.
        expected: What the caller compared against (None: "there is no champion yet").
        new: The model version the alias should hold.
        action: Recorded in the history.
        reason: Recorded in the history (e.g. the decision's first reason).
        actor: Who moved it (default ``$GITHUB_ACTOR`` or the login name).
        timeout_s: How long to wait for another mover's lock.

    Returns:
        The history entry appended.

    Raises:
        ChampionMovedError: The alias no longer holds ``expected`` (another run moved it first).
    """
    fs, base = filesystem(root)
    with _alias_lock(fs, base, task, timeout_s):
        current = read_champion(root, task)
        if current != expected:
            raise ChampionMovedError(
                f"the champion of {task!r} is now {current or 'unset'}, not {expected or 'unset'} as this run compared against: "
                f"{new} was not promoted",
                hint="another retrain promoted first; run the retrain again to compare against the new champion",
                expected=expected,
                current=current,
            )
        entry = {"from": current, "to": new, "action": action, "reason": reason, "actor": actor or os.environ.get("GITHUB_ACTOR") or _login(), "at": _now()}
        history = champion_history(root, task)
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in [*history, entry])
        write_bytes_atomic(fs, champion_history_path(base, task), lines.encode())  # history first: a move is never unrecorded
        write_bytes_atomic(fs, champion_path(base, task), f"{new}\n".encode())
    return entry
