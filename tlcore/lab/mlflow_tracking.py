"""MLflow tracking: each train, fine-tune and export run logged to the team's tracking server when one is named.

Off unless ``--mlflow URI`` (:class:`TrackingConfig`) or ``$MLFLOW_TRACKING_URI`` names a tracking server or
store (``http://host:5000``, ``sqlite:///path/mlflow.db``, ...). Then a finished run is logged as one MLflow run
of the experiment ``$MLFLOW_EXPERIMENT_NAME`` (default :data:`EXPERIMENT`):

- training (``train``, ``finetune``): its settings as parameters (the run's whole ``TrainConfig``, backbone,
  classes, photos per split), each epoch of the run's history as metrics on one step axis (the history's epoch
  numbers: the head's epochs, then fine-tuning's), the final ``final_val_accuracy`` / ``final_test_accuracy``,
  and ``labels.txt``, the model card, ``config.json`` and ``metrics.json`` as artifacts;
- an export: its ``ExportConfig`` and formats as parameters, each format's size and verification
  (``<format>/size_bytes``, ``/accuracy``, ``/agreement``, ``/latency_ms``) as metrics, the exported files,
  ``labels.txt``, the model card and ``export.json`` as artifacts.

A run made from another (a fine-tune of a saved run, an export) is a child of the MLflow run of the run folder it
started from (``mlflow.parentRunId``, also ``tlcore.parent_run_id``), found by the folder's digest
(``tlcore.run_digest``), so it is listed under it.

MLflow is imported only when a run is logged: this module's top imports nothing of it. A failure to log (a
server down, a bad URI, the package missing) never fails the run: it becomes the ``mlflow_failed`` warning of its
result, and the details go to the log.

A dashboard job's command line never carries ``--mlflow``: its worker inherits the server's environment, so a
server started with ``$MLFLOW_TRACKING_URI`` logs every job (:func:`logged_to` says so on the Runs page).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from ..io.settings import setting
from ..jobs.events import TRACKING, PhaseCallback, no_phase

__all__ = ["TrackingConfig", "TRACKING_URI_ENV", "EXPERIMENT", "tracking_uri", "shown_uri", "logged_to",
           "run_digest_or_none", "log_training", "log_export"]

log = logging.getLogger("tlcore")

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"  # MLflow's own variable for the experiment, honoured as MLflow does
EXPERIMENT = "Transfer Lab"

# How patient a run is with a tracking server that does not answer (MLflow's defaults wait minutes: 7 retries with
# a doubling back-off, 120 s a request); a value set in the environment wins.
_HTTP_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
_REASON_CHARS = 200  # of an exception's message in the warning (the whole of it is in the log)
_EXPORTS_SECTION = "\n## Exports"  # where the model card starts on the exported files


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs are logged; the commands' ``--mlflow`` comes from here."""

    mlflow_uri: str | None = setting(None, "log this run to MLflow at URI (a tracking server, or "
                                           f"sqlite:///path/mlflow.db); default ${TRACKING_URI_ENV}; nothing is "
                                           "logged when neither is set, or with --mlflow ''", option="--mlflow",
                                     metavar="URI")


def tracking_uri(config: TrackingConfig = TrackingConfig()) -> str | None:
    """The URI runs are logged to: ``config``'s, else ``$MLFLOW_TRACKING_URI`` (read here, and only here), else
    None: nothing is logged. A blank URI in ``config`` turns logging off whatever the environment says."""
    text = config.mlflow_uri if config.mlflow_uri is not None else os.environ.get(TRACKING_URI_ENV, "")
    return text.strip() or None


def shown_uri(uri: str) -> str:
    """``uri`` as it may be shown or logged: a password in it replaced by ``***``."""
    return _hidden(uri, uri)


def _password(uri: str) -> str | None:
    try:
        return urlsplit(uri).password or None
    except ValueError:  # not a URL that splits (a bad port): no password we can find
        return None


def _hidden(text: str, uri: str) -> str:
    """``text`` with the password of ``uri`` (as written, and URL-decoded) replaced by ``***``: MLflow's errors
    repeat the URL they failed on."""
    password = _password(uri)
    if password is None:
        return text
    for written in {password, unquote(password)}:
        text = text.replace(f":{written}@", ":***@")
    return text


def logged_to() -> str | None:
    """Where this server's jobs log their runs (they inherit its environment), as it may be shown; None when they
    log nothing."""
    uri = tracking_uri()
    return None if uri is None else shown_uri(uri)


def run_digest_or_none(run_dir) -> str | None:
    """The digest a run folder is known by (:func:`tlcore.models.run.run_digest`), None when it is not a readable
    run: what finds the MLflow run of a folder a fine-tune or an export starts from (taken before a fine-tune
    replaces it)."""
    from ..io.errors import TLError
    from ..models.run import run_digest

    try:
        return run_digest(run_dir)
    except (TLError, OSError):
        return None


def log_training(uri: str | None, command: str, result: dict, parent_digest: str | None = None,
                 on_phase: PhaseCallback | None = None) -> dict:
    """Log a training run (``command``: ``train`` or ``finetune``) whose summary is ``result`` (its run folder is
    ``result["run_dir"]``) to ``uri``; ``parent_digest`` is the digest of the run it continues; ``on_phase`` hears
    the ``tracking`` phase. Returns ``result``, with ``mlflow`` (``{uri, experiment_id, run_id, parent_run_id}``)
    or, when logging failed, the ``mlflow_failed`` warning. Nothing at all when ``uri`` is None."""
    if uri is None:
        return result
    run_dir = Path(result["run_dir"])

    def describe() -> _Run:
        from ..models.run_files import read_run_json

        config = read_run_json(run_dir, "config.json")
        history = result.get("history") or []
        params = {**config.get("train", {}), "backbone": config.get("backbone"),
                  "input_size": config.get("input_size"), "fine_tuned": config.get("fine_tuned"),
                  **_class_params(result["classes"]),
                  "photos_train": result["n_train"], "photos_val": result["n_val"], "photos_test": result["n_test"]}
        tuned = [h["epoch"] for h in history if h.get("phase") == "fine_tune"]
        if tuned:
            params["fine_tune_from_epoch"] = tuned[0]
        final = {"final_val_accuracy": result.get("val_accuracy"), "final_test_accuracy": result.get("test_accuracy"),
                 "duration_seconds": (result.get("seconds") or {}).get("total")}
        tags = {"tlcore.command": command, "tlcore.run_dir": str(run_dir.resolve())}
        digest = run_digest_or_none(run_dir)
        if digest:
            tags["tlcore.run_digest"] = digest
        card = _training_card(run_dir)

        def artifacts(client, run_id):
            client.log_artifact(run_id, str(run_dir / "labels.txt"))
            client.log_text(run_id, card, "MODEL_CARD.md")
            for name in ("config.json", "metrics.json"):
                client.log_artifact(run_id, str(run_dir / name), "run")

        return _Run(name=f"{command} {_folder_name(run_dir)}", tags=tags, params=params,
                    metrics=_history_metrics(history) + _final_metrics(final, len(history)),
                    artifacts=artifacts, parent_digest=parent_digest)

    return _logged(uri, result, describe, on_phase)


def log_export(uri: str | None, result: dict, run_dir, config, on_phase: PhaseCallback | None = None) -> dict:
    """Log an export (``result`` of :func:`tlcore.export.formats.export_formats`, with ``bundle`` when a bundle
    was written) of the run ``run_dir`` with the ``ExportConfig`` ``config`` to ``uri``. Returns ``result`` as
    :func:`log_training` does; nothing at all when ``uri`` is None."""
    if uri is None:
        return result
    run_dir = Path(run_dir)

    def describe() -> _Run:
        from ..models.run_files import read_run_json

        run_config = read_run_json(run_dir, "config.json")
        data = result.get("verification_data") or {}
        exports = result["exports"]
        params = {**asdict(config), "formats": [e["format"] for e in exports], "backbone": run_config.get("backbone"),
                  "input_size": run_config.get("input_size"), **_class_params(run_config.get("classes", [])),
                  "verification_source": data.get("source", "none"), "verification_photos": data.get("n", 0)}
        final = {"keras_accuracy": data.get("keras_accuracy"), "keras_latency_ms": data.get("keras_latency_ms"),
                 "duration_seconds": result.get("seconds")}
        for e in exports:
            v = e.get("verification") or {}
            final.update({f"{e['format']}/size_bytes": e.get("size_bytes"),
                          # exported_accuracy for every format; TFLite's own name too
                          f"{e['format']}/accuracy": v.get("exported_accuracy", v.get("tflite_accuracy")),
                          f"{e['format']}/agreement": v.get("agreement"),
                          f"{e['format']}/latency_ms": v.get("latency_ms")})
        tags = {"tlcore.command": "export", "tlcore.run_dir": str(run_dir.resolve())}
        digest = run_digest_or_none(run_dir)
        if digest:
            tags["tlcore.source_digest"] = digest
        card = _model_card(result, run_dir)
        export_json = json.loads(json.dumps(result))  # a copy: the result is told where it was logged afterwards

        def artifacts(client, run_id):
            for e in exports:
                path = Path(e["path"])
                if path.is_dir():  # a SavedModel
                    client.log_artifacts(run_id, str(path), path.name)
                else:
                    client.log_artifact(run_id, str(path))
            if exports and exports[0].get("labels"):  # the exports of one command share a folder and its labels.txt
                client.log_artifact(run_id, exports[0]["labels"])
            client.log_text(run_id, card, "MODEL_CARD.md")
            if result.get("bundle"):
                client.log_artifact(run_id, result["bundle"])
            client.log_dict(run_id, export_json, "export.json")

        return _Run(name=f"export {_folder_name(run_dir)}", tags=tags, params=params, metrics=_final_metrics(final, 0),
                    artifacts=artifacts, parent_digest=digest)

    return _logged(uri, result, describe, on_phase)


@dataclass
class _Run:
    """What one MLflow run holds: its name, tags, params, metrics ``(key, value, step)``, the function that logs
    its artifacts ``(client, run_id)``, and the digest of the run folder whose MLflow run is its parent."""

    name: str
    tags: dict
    params: dict
    metrics: list
    artifacts: Callable
    parent_digest: str | None = None


def _logged(uri: str, result: dict, describe: Callable[[], "_Run"], on_phase: PhaseCallback | None) -> dict:
    """Log the run ``describe()`` gives; a failure becomes a warning of ``result``."""
    shown = shown_uri(uri)
    (on_phase or no_phase)(TRACKING)
    try:
        with _patient_http():
            from mlflow.tracking import MlflowClient

            logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (creating tables) stay quiet
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment(client, uri)
            ids = _write(client, experiment_id, describe())
        result["mlflow"] = {"uri": shown, "experiment_id": experiment_id, **ids}
    except Exception as exc:  # noqa: BLE001 - tracking must never fail the run it reports
        details = "".join(traceback.format_exception(exc))
        log.warning("logging to MLflow at %s failed\n%s", shown, _hidden(details, uri).rstrip())
        result.setdefault("warnings", []).append(_failure(uri, exc))
    return result


def _write(client, experiment_id: str, run: _Run) -> dict:
    """Create the MLflow run and log everything of ``run``; ``{run_id, parent_run_id}``."""
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    parent = _parent_run(client, experiment_id, run.parent_digest)
    tags = {**run.tags, **({MLFLOW_PARENT_RUN_ID: parent, "tlcore.parent_run_id": parent} if parent else {})}
    created = client.create_run(experiment_id, run_name=run.name, tags=tags)
    run_id = created.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v, step in run.metrics],
                         params=[Param(k, _param_text(v)) for k, v in run.params.items()])
        run.artifacts(client, run_id)
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return {"run_id": run_id, "parent_run_id": parent}


def _experiment(client, uri: str) -> str:
    """The id of the experiment runs go to, created when missing (a local SQLite store's with its artifacts beside
    the database, in ``mlartifacts/``, rather than in whatever folder the command runs from)."""
    name = (os.environ.get(EXPERIMENT_ENV) or "").strip() or EXPERIMENT
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_local_artifacts(uri))
    except Exception:
        found = client.get_experiment_by_name(name)  # another job created it meanwhile
        if found is None:
            raise
        return found.experiment_id


def _local_artifacts(uri: str) -> str | None:
    """``<folder of the database>/mlartifacts`` for a ``sqlite:///`` file, else None (the store decides)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return (Path(path).resolve().parent / "mlartifacts").as_uri()


def _parent_run(client, experiment_id: str, digest: str | None) -> str | None:
    """The newest training run of the experiment logged for the run folder of ``digest``, else None."""
    if not digest:
        return None
    found = client.search_runs([experiment_id], filter_string=f"tags.`tlcore.run_digest` = '{digest}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


@contextlib.contextmanager
def _patient_http():
    """MLflow's HTTP retries and timeout shortened for this run's logging (unless the environment sets them)."""
    added = {k: v for k, v in _HTTP_PATIENCE.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _failure(uri: str, exc: BaseException) -> dict:
    """The ``mlflow_failed`` warning: one sentence naming the store and the reason (its password hidden)."""
    from ..training.alarms import alarm

    shown = shown_uri(uri)
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] == "mlflow":
        reason = "the mlflow-skinny package is not installed (pip install -r requirements.txt)"
    else:
        text = " ".join(_hidden(str(exc), uri).split())
        if len(text) > _REASON_CHARS:  # its start says what failed, its end why (a chained cause)
            half = _REASON_CHARS // 2
            text = f"{text[:half]} … {text[-half:]}"
        reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return alarm("mlflow_failed", f"the run was not logged to MLflow at {shown} ({reason}); the run itself is "
                 "complete, and the log has the details", uri=shown, reason=reason)


def _history_metrics(history: list[dict]) -> list[tuple]:
    """Each epoch's numbers at its epoch (the history counts the head's epochs, then fine-tuning's, on)."""
    return [(k, v, int(h["epoch"])) for h in history for k, v in h.items()
            if k not in ("epoch", "phase") and _number(v)]


def _final_metrics(values: dict, step: int) -> list[tuple]:
    return [(k, v, step) for k, v in values.items() if _number(v)]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _class_params(classes) -> dict:
    return {"classes": list(classes), "n_classes": len(classes)}


def _param_text(value) -> str:
    """A parameter's value as MLflow stores it (at most its 6,000 characters; labels.txt has every class)."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    if value is None:
        text = "none"
    elif isinstance(value, (list, tuple)):
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_VAL_LENGTH else text[:MAX_PARAM_VAL_LENGTH - 1] + "…"


def _folder_name(run_dir: Path) -> str:
    """A run's name: its folder's, or its job's for a dashboard job's run (``<job>/run``)."""
    from ..jobs.runner import job_meta

    run_dir = run_dir.resolve()
    return run_dir.parent.name if job_meta(run_dir.parent) is not None else run_dir.name


def _training_card(run_dir: Path) -> str:
    """A training run's model card: the bundle's card of the run up to its exports, which it has none of yet (their
    table and instructions would describe files that do not exist)."""
    from ..export.bundle import model_card

    card = model_card({"exports": [], "warnings": []}, run_dir)
    return card.split(_EXPORTS_SECTION, 1)[0].rstrip("\n") + "\n"


def _model_card(result: dict, run_dir: Path) -> str:
    """The export's model card: the bundle's own when a bundle was written (the same text), else made now."""
    if result.get("bundle"):
        with zipfile.ZipFile(result["bundle"]) as z:
            return z.read("MODEL_CARD.md").decode("utf-8")
    from ..export.bundle import model_card

    return model_card(result, run_dir)
