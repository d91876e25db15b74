"""Horizontal persona segmentation, N-party KMeans over HE-aggregated sums: ``protocols/segment_horizontal.md``."""
