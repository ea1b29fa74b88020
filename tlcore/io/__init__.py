"""Foundations every layer may use: errors, paths, settings from the environment, atomic writes, link-or-copy
snapshots, archive extraction, path confinement, signatures, the session disk quota and model-file safety checks."""
