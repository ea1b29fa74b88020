"""Exports: the formats, their verification against Keras, and the deployment bundle."""
