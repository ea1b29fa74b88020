"""The classifier and what holds it: the run folder, the TFLite runtime, conversion to TFLite, and users' model files."""
