"""fedscore: privacy-preserving audience scoring between a brand and a media platform.

Share the value of the data, never the data: private ID matching, hidden-seed lookalike,
joint propensity scoring and persona segmentation over homomorphically encrypted
aggregates, run by two Flower clients and a coordinator that holds no key.

The public API mirrors the command line, one function per command:

==========================================  =============================================
``fedscore psi``                            :func:`psi`
``fedscore lookalike``                      :func:`lookalike`
``fedscore propensity``                     :func:`propensity`
``fedscore propensity --model DIR``         :func:`propensity_score`
``fedscore segment``                        :func:`segment`
``fedscore segment --model DIR``            :func:`segment_assign`
``fedscore horizontal kmeans``              :func:`horizontal_kmeans`
``fedscore horizontal lr``                  :func:`horizontal_lr`
``fedscore score``                          :func:`score`
``fedscore keys init``                      :func:`init_keys`
``fedscore demo``                           :func:`run_demo`
(report of any run folder)                  :func:`write_report`
==========================================  =============================================

Each is imported on first use, so that ``import fedscore`` (and the parts of it a party's
Flower process needs) stays quick.

Examples
--------
>>> import fedscore
>>> result = fedscore.psi("brand.csv", "media.csv", id_column="email", out="run")  # doctest: +SKIP
>>> result.summary["intersection"]  # doctest: +SKIP
"""

from importlib import import_module

from ._version import __version__

_PUBLIC = {
    "psi": "fedscore.api.psi",
    "lookalike": "fedscore.api.lookalike",
    "propensity": "fedscore.api.propensity",
    "propensity_score": "fedscore.api.propensity",
    "segment": "fedscore.api.segment",
    "segment_assign": "fedscore.api.segment",
    "horizontal_kmeans": "fedscore.api.horizontal_kmeans",
    "horizontal_lr": "fedscore.api.horizontal_lr",
    "score": ("fedscore.kit.model", "score_file"),
    "init_keys": "fedscore.keys",
    "run_demo": "fedscore.demo",
    "write_report": "fedscore.report",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        module, attribute = _PUBLIC[name] if isinstance(_PUBLIC[name], tuple) else (_PUBLIC[name], name)
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedscore' has no attribute {name!r}")


def __dir__():
    return __all__
