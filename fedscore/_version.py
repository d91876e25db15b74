"""The installed fedscore version, read without importing the rest of the package.

The runtime and the reports need the version (parties refuse a coordinator of another
version); taking it from here instead of the package root keeps ``import fedscore.wire``
from importing every protocol.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fedscore")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
