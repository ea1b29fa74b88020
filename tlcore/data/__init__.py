"""Photos and datasets: splits, image decoding, augmentation, resampling, the health report, perceptual hashes and the
sample data."""
