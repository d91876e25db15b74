"""Write a run's output folder all at once, or not at all.

Outputs are written into a hidden staging folder beside the destination and moved into
place only when the whole run succeeded, so a failed run never leaves partial files.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError
from .kit.options import argument


@contextlib.contextmanager
def staged_output(out_dir, overwrite=False):
    """Yield a staging folder; on success it replaces ``out_dir``, on error it is removed.

    Raises
    ------
    InputError
        If ``out_dir`` exists and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise InputError(f"output folder already exists (use {argument('overwrite', True)} to replace it)",
                         path=out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
    os.chmod(out_dir, 0o755)
