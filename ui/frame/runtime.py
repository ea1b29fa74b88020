"""How the dashboard's process runs Streamlit with TensorFlow loaded: once per process, on the first page.

After every script run (every click of every user) Streamlit resets Keras with
``keras.backend.clear_session()`` when Keras is imported, then runs a full garbage
collection. With TensorFlow loaded that cost about 0.3 s of CPU per click on a fast core,
and the reset also emptied TensorFlow's kernel cache, so the next prediction of every cached
model took ten times its usual time (0.22 s instead of 0.02 s for Lite0). It also ran in one
session's thread while another session could be building a model. This app keeps no Keras
state that needs a reset between runs (models are cached read-only, jobs run in their own
processes), so:

- the reset is left out (Streamlit's other clean-up, closing matplotlib figures, is kept);
- what the process holds once its libraries are imported is frozen out of the collector
  (``gc.freeze``): the collection after each run then only walks what the runs made, which
  it still frees;
- the warm worker that starts jobs is started (:mod:`tlcore.jobs.warm`), and the default backbone's engine is
  prepared (:func:`tlcore.training.frozen.prepare_in_background`).
"""
from __future__ import annotations

import gc
import logging
import sys

__all__ = ["prepare_process", "clean_after_run"]

log = logging.getLogger("tlcore")

_prepared = False


def clean_after_run() -> None:
    """Streamlit's clean-up after a script run, without the Keras reset."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        try:
            plt.close("all")
        except Exception:  # noqa: BLE001 - as Streamlit: a clean-up must not fail the page
            log.debug("could not close matplotlib figures", exc_info=True)


def prepare_process() -> None:
    """Leave out Streamlit's per-run Keras reset and freeze the imported libraries out of the collector (once)."""
    global _prepared
    if _prepared:
        return
    import keras  # noqa: F401 - imported before the freeze, so that the freeze covers it
    from streamlit.runtime.scriptrunner import script_runner

    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = clean_after_run
    else:  # a Streamlit release that renamed it: clicks cost more, nothing breaks
        log.warning("Streamlit's per-run clean-up was not found; Keras is reset after every run")
    gc.collect()  # what is garbage now is freed before the rest is frozen
    gc.freeze()
    # Jobs start from a worker that has imported TensorFlow already (tlcore.jobs.warm): it starts now, with the
    # server, so that the first user's first job does not pay for the import. (Not in a process that merely
    # imports the dashboard's code, such as a test runner: its first job starts the warm worker.)
    from streamlit import runtime

    if runtime.exists():
        from tlcore.jobs.runner import warm_up_workers
        from tlcore.training.frozen import prepare_in_background

        warm_up_workers()
        # The default backbone's engine is converted now, not inside the first user's first job.
        prepare_in_background()
    _prepared = True
