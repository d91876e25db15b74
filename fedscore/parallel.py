"""Run independent operations on every core, with threads.

The heavy work fedscore spreads out (SEAL ciphertext products under TenSEAL, gmpy2's
big-number lists, libsodium's curve multiplications) releases Python's global
interpreter lock, so threads overlap real work without the cost of copying keys and
ciphertexts into worker processes.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

WORKERS = os.cpu_count() or 1

PARALLEL_MIN_ITEMS = 4096
"""Below this many items :func:`parallel_chunks` works in the calling thread: threads would not pay."""


def parallel_map(function, items):
    """Return ``[function(item) for item in items]``, spread over ``WORKERS`` threads."""
    items = list(items)
    if WORKERS == 1 or len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        return list(pool.map(function, items))


def parallel_chunks(function, items, *args):
    """``function(chunk, *args)`` over consecutive chunks of ``items``, results concatenated in order.

    ``function`` returns an array per chunk (rows in the chunk's order). Four chunks per
    worker even out chunks that take longer than others.
    """
    if len(items) < PARALLEL_MIN_ITEMS or WORKERS == 1:
        return function(items, *args)
    bounds = np.linspace(0, len(items), 4 * WORKERS + 1).astype(int)
    parts = parallel_map(lambda span: function(items[span[0]:span[1]], *args), zip(bounds[:-1], bounds[1:]))
    return np.concatenate(parts)
