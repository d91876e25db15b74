"""fedscore: privacy-preserving audience scoring between a brand and a media platform.

Share the value of the data, never the data: private ID matching, hidden-seed lookalike,
joint propensity scoring and persona segmentation over homomorphically encrypted
aggregates, run by two Flower clients and a coordinator that holds no key.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fedscore")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
