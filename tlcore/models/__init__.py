"""The classifier and what holds it: the run folder, the TFLite runtime and its latency timing, conversion to TFLite,
and users' model files."""
