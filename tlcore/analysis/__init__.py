"""What a trained model is worth: metrics, calibration, curve diagnosis and explanations."""
