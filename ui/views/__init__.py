"""What pages show: each view draws one part of a page from tlcore's results."""
