"""Transfer Lab core: backbones, data, training and evaluation, without any UI."""
import os

# TensorFlow prints start-up noise on stderr; the CLI promises one clear line on errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
