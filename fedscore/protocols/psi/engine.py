"""X25519 on many points at once: the engines :mod:`.group` multiplies with.

Both engines compute RFC 7748's X25519 function, byte for byte the same; neither
holds curve arithmetic of fedscore's own. They differ in how many points a call takes:

``ipp-crypto-mb8``
    Intel IPP-Crypto's multi-buffer library (``libcrypto_mb``, PyPI wheel
    ``ipp-crypto``): ``mbx_x25519_mb8`` multiplies eight points per call on AVX-512
    IFMA, the routine SecretFlow's ECDH PSI runs on. Installed by default on x86-64
    Linux; used when the CPU has the instructions and a known-answer test passes.
``libsodium``
    PyNaCl's ``crypto_scalarmult``, one point per call: the fallback everywhere else.

Both release Python's GIL while they compute, so :func:`fedscore.parallel.parallel_chunks`
spreads one party's multiplications over every core. Neither engine decides what a
point of small order means: :mod:`.group` refuses those before multiplying and checks
every product.
"""

import ctypes
import importlib.metadata
import os

import nacl.bindings
import nacl.exceptions
import numpy as np

POINT_BYTES = 32  # an X25519 u-coordinate or scalar, little-endian (RFC 7748 section 5)

# RFC 7748 section 5.2, first test vector: X25519(scalar, u) = output. Checked once per
# process before the multi-buffer engine is trusted.
KNOWN_ANSWER = (
    bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
    bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
    bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
)

ENGINE_VARIABLE = "FEDSCORE_X25519_ENGINE"
"""Set to ``libsodium`` to keep the fallback on a machine the multi-buffer engine would
run on (a comparison, a suspected library fault); unset, the fastest engine that works."""

# Intel's compiler runtime libraries that libcrypto_mb.so links against without an
# RPATH (wheel intel-cmplr-lib-rt), in dependency order: loaded globally first so that
# the dynamic linker resolves them.
_MB_RUNTIME = ("libintlc.so.5", "libirng.so", "libimf.so", "libsvml.so")
_MB_LIBRARY = ("libcrypto_mb.so", "libcrypto_mb.so.13")
_MB_LANES = 8  # points per mbx_x25519_mb8 call
# mbx_status: four bits per lane; MBX_STATUS_LOW_ORDER_ERR (crypto_mb/status.h) flags a
# lane whose point has small order (the result would be zero).
_MB_STATUS_LOW_ORDER = 4
_MB_LOW_ORDER_ALL_LANES = sum(_MB_STATUS_LOW_ORDER << (4 * lane) for lane in range(_MB_LANES))


class SodiumEngine:
    """X25519 through libsodium (PyNaCl), one point per call.

    Attributes
    ----------
    name : str
    detail : str
        The library behind it, for reports.
    """

    name = "libsodium"

    def __init__(self):
        self.detail = f"libsodium through PyNaCl {importlib.metadata.version('pynacl')}"

    def multiply(self, points, key):
        """``X25519(key, p)`` for each row of ``points`` (``(n, 32)`` uint8); all zero for small order.

        libsodium refuses a point of small order instead of returning the all-zero
        result; the row is left zero so that both engines answer alike.
        """
        out = bytearray(POINT_BYTES * len(points))
        multiply = nacl.bindings.crypto_scalarmult
        for i, row in enumerate(np.ascontiguousarray(points, dtype=np.uint8)):
            try:
                out[i * POINT_BYTES:(i + 1) * POINT_BYTES] = multiply(key, row.tobytes())
            except nacl.exceptions.RuntimeError:
                pass
        return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, POINT_BYTES)


class MultiBufferEngine:
    """X25519 through IPP-Crypto's ``mbx_x25519_mb8``: eight points per call.

    Parameters
    ----------
    library : ctypes.CDLL
        ``libcrypto_mb``, loaded by :func:`load_multi_buffer`.

    Notes
    -----
    The function takes three arrays of eight pointers (results, scalars, points) and
    returns a status word of four bits per lane, zero when every lane succeeded; a lane
    with a point of small order is flagged and its row left zero, as libsodium's. A
    batch is padded to a multiple of eight with copies of its first point; the padding
    lanes' results are dropped. ``ctypes.CDLL`` releases the GIL around every call.
    """

    name = "ipp-crypto-mb8"

    def __init__(self, library, version=""):
        self._x25519 = library.mbx_x25519_mb8
        self.detail = f"IPP-Crypto crypto_mb {version}".strip()

    def multiply(self, points, key):
        """``X25519(key, p)`` for each row of ``points`` (``(n, 32)`` uint8); zero for small order."""
        n = len(points)
        if n == 0:
            return np.zeros((0, POINT_BYTES), dtype=np.uint8)
        source = np.ascontiguousarray(points, dtype=np.uint8)
        if n % _MB_LANES:
            source = np.concatenate([source, np.repeat(source[:1], _MB_LANES - n % _MB_LANES, axis=0)])
        out = np.empty_like(source)
        scalar = np.frombuffer(bytes(key), dtype=np.uint8).copy()
        offsets = np.arange(len(source), dtype=np.uint64) * np.uint64(POINT_BYTES)
        inputs = offsets + np.uint64(source.ctypes.data)
        outputs = offsets + np.uint64(out.ctypes.data)
        scalars = np.full(_MB_LANES, scalar.ctypes.data, dtype=np.uint64)
        x25519, step = self._x25519, _MB_LANES * 8  # eight 8-byte pointers per call
        first_in, first_out, scalar_pointers = inputs.ctypes.data, outputs.ctypes.data, scalars.ctypes.data
        failed = 0
        for offset in range(0, len(source) * 8, step):
            failed |= x25519(first_out + offset, scalar_pointers, first_in + offset)
        if failed & ~_MB_LOW_ORDER_ALL_LANES:
            raise RuntimeError(f"mbx_x25519_mb8 failed (status {failed:#x})")
        if failed:  # a point of small order in some lane: find the lanes, leave their rows zero
            for offset in range(0, len(source) * 8, step):
                status = x25519(first_out + offset, scalar_pointers, first_in + offset)
                for lane in range(_MB_LANES):
                    if (status >> (4 * lane)) & _MB_STATUS_LOW_ORDER:
                        out[offset // 8 + lane] = 0
        return out[:n]


def _library_file(distribution, names):
    """The path of the first of ``names`` that ``distribution`` installed, or None."""
    try:
        files = importlib.metadata.files(distribution) or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    found = {f.name: f for f in files}
    for name in names:
        if name in found:
            return str(found[name].locate())
    return None


def load_multi_buffer():
    """Load the multi-buffer engine; return ``(engine, None)`` or ``(None, reason)``."""
    path = _library_file("ipp-crypto", _MB_LIBRARY)
    if path is None:
        return None, "the ipp-crypto package is not installed"
    try:
        for name in _MB_RUNTIME:
            runtime = _library_file("intel-cmplr-lib-rt", (name,))
            if runtime is None:
                return None, f"intel-cmplr-lib-rt does not provide {name}"
            ctypes.CDLL(runtime, mode=ctypes.RTLD_GLOBAL)
        library = ctypes.CDLL(path)
    except OSError as error:
        return None, f"libcrypto_mb could not be loaded ({error})"
    library.mbx_is_crypto_mb_applicable.restype = ctypes.c_int
    library.mbx_is_crypto_mb_applicable.argtypes = [ctypes.c_uint64]
    if not library.mbx_is_crypto_mb_applicable(0):
        return None, "this CPU lacks the AVX-512 IFMA instructions mbx_x25519_mb8 needs"
    library.mbx_x25519_mb8.restype = ctypes.c_uint64
    library.mbx_x25519_mb8.argtypes = [ctypes.c_void_p] * 3
    engine = MultiBufferEngine(library, importlib.metadata.version("ipp-crypto"))
    scalar, point, expected = KNOWN_ANSWER
    try:
        answer = engine.multiply(np.frombuffer(point, dtype=np.uint8).reshape(1, POINT_BYTES), scalar)
    except RuntimeError as error:
        return None, str(error)
    if answer.tobytes() != expected:
        return None, "mbx_x25519_mb8 failed RFC 7748's known-answer test"
    return engine, None


_SELECTED = {}


def default_engine():
    """The engine PSI multiplies with in this process: the multi-buffer one when it works here.

    Returns
    -------
    SodiumEngine or MultiBufferEngine
        Chosen once per process (``FEDSCORE_X25519_ENGINE=libsodium`` forces the
        fallback); :func:`fallback_reason` says why the fallback was taken.
    """
    if "engine" not in _SELECTED:
        engine, reason = None, f"{ENGINE_VARIABLE}=libsodium"
        if os.environ.get(ENGINE_VARIABLE, "") != SodiumEngine.name:
            engine, reason = load_multi_buffer()
        _SELECTED["engine"], _SELECTED["reason"] = engine or SodiumEngine(), reason
    return _SELECTED["engine"]


def fallback_reason():
    """Why :func:`default_engine` is libsodium, or None when it is the multi-buffer engine."""
    default_engine()
    return _SELECTED["reason"]
