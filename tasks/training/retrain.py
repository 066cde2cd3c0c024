"""Retraining with a champion gate: train on the latest validated version, compare, decide, move the alias.

The sequence :func:`retrain` runs (no Prefect here; ``flows/retrain.py`` and ``posepipe retrain``
are thin shells around it):

1. open the dataset's ``LATEST`` version (an unvalidated or tampered version is refused by the
   reader, before anything trains);
2. :func:`tasks.training.train.train` the task on it: a model already registered for the same
   inputs is reused without training, an interrupted run resumes from its checkpoint;
3. read the ``champion`` alias; re-score the champion *on the same evaluation split of the same
   version* (its stored metrics may come from older data);
4. compute a paired bootstrap interval of the improvement for every change threshold whose metric
   the task decomposes per sample (:meth:`~tasks.training.tasks.TrainingTask.gate_samples`);
5. :func:`tasks.training.champion.decide`, write the decision (always, with its reasons) to
   ``{root}/models/{task}/_decisions/`` (and ``decision_out`` when given, for CI to upload);
6. if promoted, move the alias by compare-and-swap against the champion read in step 3; if
   another retrain moved it in between, the decision is rewritten as refused, naming the winner.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.errors import ChampionMovedError, ModelNotFoundError
from storage.fs import filesystem
from storage.layout import decision_path
from tasks.training import champion as gate
from tasks.training import registry
from tasks.training.registry import PREDICTIONS
from tasks.training.train import TrainRequest, TrainResult, load_registered_model, train


@dataclass(frozen=True)
class RetrainRequest:
    """What to retrain and how to decide.

    Attributes:
        train: The training request (its ``version`` is ignored: the latest validated one is used).
        force: Promote whatever the gate says (recorded with ``actor``).
        actor: Who asked (default: ``$GITHUB_ACTOR`` or the login name).
        thresholds: The gate's thresholds (``champion.parse_thresholds`` format); None: the task's defaults.
        resamples: Paired bootstrap resamples per metric.
        confidence: Two-sided level of the bootstrap interval.
        decision_out: Also write the decision here (a CI artifact).
    """

    train: TrainRequest
    force: bool = False
    actor: str | None = None
    thresholds: Mapping[str, Any] | None = None
    resamples: int = 1000
    confidence: float = 0.95
    decision_out: str | None = None


@dataclass(frozen=True)
class RetrainResult:
    """A retrain's outcome: the candidate, the decision, where it was written, whether the alias moved."""

    train: TrainResult
    decision: gate.Decision
    decision_path: str
    champion_before: str | None
    champion_after: str | None

    @property
    def exit_code(self) -> int:
        """0: promoted or nothing changed; :data:`~tasks.training.champion.EXIT_REFUSED`: the gate refused."""
        return self.decision.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.train.task,
            "candidate": self.train.model_version,
            "reused": self.train.reused,
            "dataset": self.train.dataset,
            "dataset_version": self.train.dataset_version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "decision": self.decision.to_dict(),
            "decision_path": self.decision_path,
            "exit_code": self.exit_code,
        }


def _predictions(record: registry.ModelRecord) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(record.file(PREDICTIONS))


def champion_on(root: str, champion: str, task_name: str, version: Any, split: str, out_dir: str) -> tuple[dict[str, Any], Any, Any, dict[str, Any]]:
    """The champion scored on ``split`` of ``version``: its predictions there, and their metrics.

    A champion trained and evaluated on exactly this version and split already has both (its
    ``predictions.parquet`` and ``metrics.json``); any other is loaded, predicts now and is scored.

    Returns:
        ``(metrics, predictions table, task, params)``.

    Raises:
        ModelNotFoundError: The alias names a model that is not registered (deleted by hand).
    """
    from tasks.training.tasks import get_task

    record = registry.find_model(root, task_name, champion)
    if record is None:
        raise ModelNotFoundError(
            f"the champion of {task_name!r} is {champion}, which is not registered under {root}",
            hint=f"posepipe models rollback {task_name} VERSION (posepipe models ls {task_name} lists them)",
        )
    scored_on = record.lineage.get("dataset", {})
    if scored_on.get("version") == version.version and scored_on.get("eval_split") == split:
        return dict(record.metrics), _predictions(record), get_task(record.task), dict(record.lineage.get("params", {}))
    task, model, spec, params = load_registered_model(record)
    task.check_dataset(version, params)
    predictions = task.predict(model, version, split, spec, params)
    return task.evaluate(predictions, version, split, params, out_dir), predictions, task, params


def intervals_for(
    thresholds: list[gate.Threshold],
    candidate: Any,
    champion: Any,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, gate.Interval]:
    """Paired bootstrap intervals of the improvement for every change threshold both models decompose.

    Args:
        thresholds: The gate's thresholds.
        candidate: The candidate's :class:`~tasks.training.tasks.GateSamples`.
        champion: The champion's, on the same version and split.
        resamples: Resamples per metric.
        confidence: Two-sided level.
        seed: Resampling seed.

    Returns:
        Metric name -> interval (metrics without a per-sample form are absent: their change checks
        then say no interval could be computed unless the threshold sets ``credible: false``).
    """
    if candidate.sample_ids != champion.sample_ids or not candidate.sample_ids:
        return {}
    n = len(candidate.sample_ids)
    out: dict[str, gate.Interval] = {}
    for th in thresholds:
        if not th.has_change or th.metric not in candidate.metrics or th.metric not in champion.metrics:
            continue
        f_cand: Callable[[np.ndarray], float] = candidate.metrics[th.metric]
        f_champ: Callable[[np.ndarray], float] = champion.metrics[th.metric]
        out[th.metric] = gate.paired_bootstrap(lambda idx, a=f_cand, b=f_champ: (a(idx), b(idx)), n, th.direction, resamples, confidence, seed)
    return out


def decision_markdown(result: dict[str, Any]) -> str:
    """The decision as a markdown page: status, reasons, and each gated metric, candidate vs champion.

    Args:
        result: :meth:`tasks.training.retrain.RetrainResult.to_dict`.
    """
    d = result["decision"]
    lines = [f"# {result['task']}: {d['status']} (exit {result['exit_code']})", "",
             f"candidate `{result['candidate']}` ({'reused' if result['reused'] else 'trained'}) on {result['dataset']}@{result['dataset_version']}; "
             f"champion before `{result['champion_before']}`, after `{result['champion_after']}`", ""]  # fmt: skip
    lines += [f"- {r}" for r in d["reasons"]]
    lines += ["", "| metric | check | candidate | champion | improvement | required | interval | pass |", "|---|---|---|---|---|---|---|---|"]
    for c in d["checks"]:
        iv = c.get("interval")
        interval = f"[{float(iv['low']):+.4g}, {float(iv['high']):+.4g}]" if iv else ""
        cells = [c["metric"], c["kind"], c.get("value"), c.get("baseline"), c.get("improvement"), c.get("required"), interval, "yes" if c["passed"] else "**no**"]
        lines.append("| " + " | ".join("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in cells) + " |")
    lines += ["", f"decision file: `{result['decision_path']}`"]
    return "\n".join(lines)


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _write(decision: gate.Decision, root: str, task: str, out: str | None) -> str:
    fs, rpath = filesystem(root)
    path = decision_path(rpath, task, _stamp(), decision.candidate)
    gate.write_decision(path, decision)
    if out:
        gate.write_decision(out, decision)
    return path


def retrain(request: RetrainRequest, progress: Callable[[dict[str, Any]], None] | None = None) -> RetrainResult:
    """Train on the latest validated version, compare with the champion, decide and (maybe) promote.

    Returns:
        The :class:`RetrainResult` (its ``exit_code`` is what CI should exit with).

    Raises:
        VersionNotFoundError, VersionNotValidatedError, ShardChecksumError: The dataset has no
            usable latest version (nothing trained, no decision).
        TaskDataError, NonFiniteLossError, TrainingError: Training refused or failed (no decision:
            there is no candidate).
    """
    from tasks.training.tasks import get_task

    tr = request.train
    task = get_task(tr.task)
    version = task.open_version(tr.root, tr.dataset, None)
    result = train(dataclasses.replace(tr, version=version.version), progress)
    record = registry.find_model(tr.root, tr.task, result.model_version)
    if record is None:  # train() registered it: it cannot be missing
        raise ModelNotFoundError(f"{tr.task}@{result.model_version} was trained but is not registered")
    params = dict(record.lineage.get("params", {}))
    split = str(record.lineage.get("dataset", {}).get("eval_split") or task.splits(version, params)[1])
    thresholds = gate.parse_thresholds(task.thresholds if request.thresholds is None else request.thresholds)
    current = gate.read_champion(tr.root, tr.task)
    cand_metrics = registry.flat_metrics(result.metrics)
    champ_metrics: dict[str, float] | None = None
    intervals: dict[str, gate.Interval] = {}
    if current is not None and current != result.model_version:
        with tempfile.TemporaryDirectory(prefix="posepipe-champion-") as tmp:
            metrics, champ_pred, champ_task, champ_params = champion_on(tr.root, current, tr.task, version, split, tmp)
        champ_metrics = registry.flat_metrics(metrics)
        if any(th.has_change for th in thresholds):
            cand_gate = task.gate_samples(_predictions(record), version, split, params)
            champ_gate = champ_task.gate_samples(champ_pred, version, split, champ_params)
            intervals = intervals_for(thresholds, cand_gate, champ_gate, request.resamples, request.confidence, tr.seed)
    decision = gate.decide(tr.task, result.model_version, cand_metrics, thresholds, current, champ_metrics, intervals, request.force, request.actor)
    after = current
    if decision.promote:
        try:
            gate.move_champion(tr.root, tr.task, current, result.model_version, "force" if decision.status == "forced" else "promote",
                               decision.reasons[0], decision.forced_by or request.actor)  # fmt: skip
            after = result.model_version
        except ChampionMovedError as exc:
            decision = dataclasses.replace(
                decision,
                status="refused",
                promote=False,
                gate_status=decision.status,
                reasons=(f"not promoted: the champion moved to {exc.current} while this run compared against {current or 'no champion'}",
                         "rerun the retrain to compare against the new champion", *decision.reasons),
            )  # fmt: skip
            after = exc.current
    path = _write(decision, tr.root, tr.task, request.decision_out)
    return RetrainResult(result, decision, path, current, after)


def promote(root: str, task: str, model_version: str, actor: str | None = None, reason: str = "promoted by hand") -> dict[str, Any]:
    """``posepipe models promote``: point the champion at a registered model (compare-and-swap on the current one).

    Raises:
        ModelNotFoundError: ``model_version`` is not registered.
        ChampionMovedError: The alias moved between reading and writing it (retry).
    """
    return _move(root, task, model_version, "promote", actor, reason)


def rollback(root: str, task: str, model_version: str, actor: str | None = None, reason: str = "rolled back by hand") -> dict[str, Any]:
    """``posepipe models rollback``: like :func:`promote`, recorded as a rollback in the alias history."""
    return _move(root, task, model_version, "rollback", actor, reason)


def _move(root: str, task: str, model_version: str, action: str, actor: str | None, reason: str) -> dict[str, Any]:
    if registry.find_model(root, task, model_version) is None:
        raise ModelNotFoundError(f"{task}@{model_version} is not registered under {root}", hint=f"posepipe models ls {task}")
    current = gate.read_champion(root, task)
    return gate.move_champion(root, task, current, model_version, action, reason, actor)  # type: ignore[arg-type]
