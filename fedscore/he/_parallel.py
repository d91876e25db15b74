"""Run independent big-number or ciphertext operations on every core.

SEAL (under TenSEAL) and gmpy2's list functions release Python's global interpreter
lock, so threads overlap real work without the cost of copying keys and ciphertexts
into worker processes.
"""

import os
from concurrent.futures import ThreadPoolExecutor

WORKERS = os.cpu_count() or 1


def parallel_map(function, items):
    """Return ``[function(item) for item in items]``, spread over ``WORKERS`` threads."""
    items = list(items)
    if WORKERS == 1 or len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        return list(pool.map(function, items))
