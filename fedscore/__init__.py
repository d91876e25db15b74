"""fedscore: privacy-preserving audience scoring between a brand and a media platform.

Share the value of the data, never the data: private ID matching, hidden-seed lookalike,
joint propensity scoring and persona segmentation over homomorphically encrypted
aggregates, run by two Flower clients and a coordinator that holds no key.

The public API mirrors the command line:

==========================================  =============================================
``fedscore psi``                            :func:`psi`
``fedscore lookalike``                      :func:`lookalike`
``fedscore propensity``                     :func:`propensity`
``fedscore segment``                        :class:`VerticalKMeans`
``fedscore horizontal kmeans``              :class:`HorizontalKMeans`
``fedscore horizontal lr``                  :class:`HorizontalLogisticRegression`
``fedscore keys init``                      :func:`init_keys`
``fedscore demo``                           :func:`run_demo`
(report of any run folder)                  :func:`write_report`
==========================================  =============================================

Examples
--------
>>> import fedscore
>>> result = fedscore.psi("brand.csv", "media.csv", id_column="email", out="run")  # doctest: +SKIP
>>> result.summary["intersection"]  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fedscore")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

# Imported after __version__, which the runtime modules read. Three functions share their
# module's name (psi, lookalike, propensity): binding them here, once, keeps the function.
from .demo import run_demo  # noqa: E402
from .keys import init_keys  # noqa: E402
from .lookalike import lookalike  # noqa: E402
from .propensity import propensity  # noqa: E402
from .psi import psi  # noqa: E402
from .report import write_report  # noqa: E402
from .scoring_horizontal import HorizontalLogisticRegression  # noqa: E402
from .segment import VerticalKMeans  # noqa: E402
from .segment_horizontal import HorizontalKMeans  # noqa: E402

__all__ = ["HorizontalKMeans", "HorizontalLogisticRegression", "VerticalKMeans", "init_keys", "lookalike",
           "propensity", "psi", "run_demo", "write_report"]
