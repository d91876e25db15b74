"""``fedscore.horizontal_lr``: one logistic regression trained on N parties' tables on this machine."""

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import FedscoreError, InputError
from ..keys import PUBLIC_FILE, init_keys, party_key_name, read_manifest
from ..kit.model import ModelFile
from ..kit.options import argument, with_options
from ..kit.table import Chunk
from ..protocols.horizontal import own_settings
from ..protocols.horizontal_lr.options import HorizontalLROptions
from ._run import ENGINE, run


@dataclass
class HorizontalLRResult:
    """What a horizontal LR run produced, read back from its output folder.

    Attributes
    ----------
    out : Path
    summary : dict
        The coordinator's summary: participation per round, dropouts, traffic, DP
        parameters, privacy warnings.
    model : fedscore.kit.model.ModelFile
        The global model as the first party that finished wrote it. Every party that
        finished holds the same coefficients; with ``min_category_count`` or
        ``outlier_quantile`` each party's file encodes with its own kept categories and
        bounds (``models``), so that it scores its own table as the run did.
    models : dict of party to fedscore.kit.model.ModelFile
        Each party's model file.
    history : dict of party to list of dict
        Each party's validation AUC per round, on its own held-out rows.
    reports : dict of party to dict
        Each party's ``report.json``.
    epsilon : float or None
        The epsilon the accountant reports for the run (None without DP).
    """

    out: Path
    summary: dict
    model: ModelFile
    models: dict
    history: dict
    reports: dict
    epsilon: float | None

    @property
    def coef(self):
        """Coefficients on the standardised, one-hot encoded features."""
        return self.model.coef

    @property
    def intercept(self):
        return self.model.intercept

    @property
    def encoder(self):
        """Global standardisation and categories, as every party encodes its rows."""
        return self.model.encoder

    @property
    def feature_names(self):
        return list(self.model.encoder.feature_names_)

    def transform(self, frame):
        """The rows of ``frame`` encoded as the parties encoded theirs: ``(rows, len(feature_names))``."""
        return _encode(self.model.encoder, frame)

    def decision_function(self, frame):
        """The logit of each row of ``frame`` (a table with the training columns, of any dtypes)."""
        return self.model.logits(_encode(self.model.encoder, frame))

    def predict_proba(self, frame):
        """``(rows, 2)`` probabilities of class 0 and 1, as scikit-learn returns them."""
        p = self.model.scores(_encode(self.model.encoder, frame))
        return np.column_stack([1 - p, p])


@with_options(HorizontalLROptions)
def horizontal_lr(parties, *, out, key_dir=None, engine=ENGINE, overwrite=False, resume=False, timeout=600.0,
                  options):
    """Train one logistic regression on N parties' rows (the same tag schema) without pooling them.

    Each round every party trains on its own rows and sends its update encrypted under a
    key shared by the parties; the coordinator only adds ciphertexts.

    Parameters
    ----------
    parties : sequence of path, or dict of name to (path or pandas.DataFrame)
        One table per party. A party given by a path alone is named after its file
        (without extension).
    out : path
        Receives ``model.json``, ``report.json``, ``ledger.jsonl``, ``summary.json``
        and ``<party>/{model.json, scores.csv, report.json, report.html}``.
    key_dir : path, optional
        A folder from :func:`fedscore.keys.init_keys` with at least one secret file per
        party (the i-th party gets ``party-i.secret``). Without it a fresh key is made
        for this run in a private temporary folder and deleted afterwards.
    engine : {"local", "simulation", "deployment"}
    overwrite : bool
    resume : bool
        Go on from the checkpoint a failed attempt of the same run left beside ``out``.
        Needs ``key_dir``: a run with a fresh key of its own cannot be resumed.
    timeout : float
        Seconds to wait for a party's answer before the run stops, naming it.

    Returns
    -------
    HorizontalLRResult

    Notes
    -----
    The coordinator never sees the model: each party decrypts it from the encrypted sum.
    Run on one machine, every party's outputs land under ``out``, so the model is read
    from the first party that finished and copied to ``out/model.json``.

    Examples
    --------
    >>> result = horizontal_lr(["north.csv", "south.csv", "west.csv"], id_column="id",  # doctest: +SKIP
    ...                        label_column="y", rounds=5, out="run")
    >>> result.predict_proba(frame)[:, 1]  # doctest: +SKIP
    """
    if options.public_key is not None:
        raise InputError(f"{argument('public_key')} is set from the key folder: give {argument('key_dir')} instead")
    tables = _named(parties)
    if resume and key_dir is None:
        raise InputError(f"{argument('resume')} needs the key folder of the failed attempt (from 'fedscore keys "
                         "init'): a run with a fresh key of its own cannot be resumed")
    with _run_keys(key_dir, len(tables)) as folder:
        manifest = read_manifest(folder)
        if len(manifest["parties"]) < len(tables):
            raise InputError(f"the key folder holds keys for {len(manifest['parties'])} parties, not {len(tables)}",
                             path=folder)
        # Parties may run in other working directories: every key path is absolute.
        # Each party's privacy options are its own: pinned in its settings, checked against the run's.
        settings = {role: {"key-path": str(folder / party_key_name(i + 1)), **own_settings(options)}
                    for i, role in enumerate(tables)}
        options = options.replace(public_key=str(folder / PUBLIC_FILE))
        summary = run("horizontal_lr", tables, options, out=out, engine=engine, overwrite=overwrite, resume=resume,
                      timeout=timeout, settings=settings)
    return read_result(out, summary)


def read_result(out, summary):
    """Read a horizontal LR output folder into a :class:`HorizontalLRResult`; write the run's model and report."""
    out = Path(out)
    finished = summary["finished"]
    if not finished:
        raise FedscoreError("no party finished the run: no model was written")
    model_text = (out / finished[0] / "model.json").read_text(encoding="utf-8")
    reports = {r: json.loads((out / r / "report.json").read_text(encoding="utf-8")) for r in finished}
    (out / "model.json").write_text(model_text, encoding="utf-8")
    report = {"summary": summary, "parties": reports}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return HorizontalLRResult(out=out, summary=summary, model=ModelFile.load(out / "model.json"),
                              models={r: ModelFile.load(out / r / "model.json") for r in finished},
                              history={r: rep["rounds"] for r, rep in reports.items()}, reports=reports,
                              epsilon=summary["dp"]["epsilon"] if summary["dp"] else None)


def _named(parties):
    """``{name: table}``: a dict as given, or paths named after their files."""
    if isinstance(parties, dict):
        tables = dict(parties)
    else:
        if isinstance(parties, (str, Path, pd.DataFrame)):
            raise InputError("parties must be a list of tables (one per party) or a dict of name to table")
        paths = [Path(p) for p in parties]
        tables = {p.stem: p for p in paths}
        if len(tables) != len(paths):
            raise InputError(f"party files must have distinct names (without extension): {[p.stem for p in paths]}")
    return tables


@contextlib.contextmanager
def _run_keys(key_dir, parties):
    """Yield ``key_dir`` (absolute), or a fresh ceremony's folder inside a private (0700) temporary folder."""
    if key_dir is not None:
        yield Path(key_dir).absolute()
        return
    with tempfile.TemporaryDirectory(prefix="fedscore-keys-") as tmp:
        folder = Path(tmp) / "keys"
        init_keys(folder, parties)
        yield folder


def _encode(encoder, frame):
    """Encode a data frame's rows as the parties encoded theirs, as ``fedscore score`` encodes a file's.

    Columns of any dtypes: numbers typed or written as text, categories as text or
    pandas categoricals. Errors name the column and the row as a file of the frame would
    number it (first data row = 2).
    """
    import pyarrow as pa

    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"expected a pandas DataFrame, not {type(frame).__name__}")
    names = {str(c).strip(): c for c in frame.columns}
    missing = [c for c in encoder.columns_ if c not in names]
    if missing:
        raise InputError(f"missing column (columns are: {', '.join(names)})", column=missing[0])
    columns = {}
    for column in encoder.columns_:
        series = frame[names[column]]
        try:
            columns[column] = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python types in one column: compare as text
            columns[column] = pa.array(series.astype("string"), from_pandas=True)
    return encoder.transform_chunk(Chunk(path=None, offset=0, columns=columns))
