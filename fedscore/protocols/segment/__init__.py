"""Vertical persona segmentation, two-party KMeans on the brand's and the media's features: ``protocols/segment_vertical.md``."""
