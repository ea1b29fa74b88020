"""Training: the config, the two-phase pipeline, features and their engine, head trainers, checkpoints, resume,
distribution, alarms and job command lines."""
