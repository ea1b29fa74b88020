"""Exports: the formats, their verification against Keras, the deployment bundle, and the web page (web.py)."""
