"""Private set intersection (PSI) between the brand and the media: ``protocols/psi.md``.

Diffie-Hellman PSI over the prime-order subgroup of Curve25519. Each party hashes its
normalised IDs onto the curve and raises them to its own secret scalar (X25519, from
libsodium); since scalar multiplications commute, an ID blinded by both parties' keys
gives the same point whichever went first, and nothing else about the ID. Comparing
the double-blinded sets finds the common IDs.

Two modes (the spec says exactly what each side learns):

``both``
    Both parties learn the intersection, in one shared row order (sorted by the
    double-blinded value, which both hold and which says nothing about either table).
``labelled``
    The media learns only the size of the brand's set. The brand learns, for each
    of the media's IDs in the media's order, whether it is one of the brand's, so that
    it can later send labels encrypted in the media's row order (hidden-seed lookalike).

Protocols that need matched rows run PSI as their first phase with :func:`intersect`
and find the result in each party's ``party.state["psi"]``:

================  =========  =========================================================
key               who        value
================  =========  =========================================================
``mode``          both       ``"both"`` or ``"labelled"``
``size``          both       distinct non-empty IDs this party matched with
``peer_size``     both       the same count for the other party
``ids``           ``both``   this party's IDs (as written in its table, trimmed) in the
                  mode       shared order, ``numpy.ndarray`` of str
``rows``          ``both``   row of each of ``ids`` in this party's table (0-based,
                  mode       data rows), ``numpy.ndarray`` of int64
``rows``          media,     the media's *PSI order*: the table row (0-based) of each
                  labelled   of its distinct IDs, in order of first appearance
``flags``         brand,     bool array over the media's PSI order: True where the
                  labelled   media's ID is one of the brand's
``brand_rows``    brand,     int64 array over the media's PSI order: the brand's table
                  labelled   row of that ID, -1 where it is not the brand's
``matched``       brand,     number of True ``flags`` (the brand learns it; the media
                  labelled   and the coordinator do not)
================  =========  =========================================================

Secret scalars and channel keys live in ``party.state["_psi"]`` only while PSI runs
and are deleted by each party's last PSI step.
"""

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gmpy2
import nacl.bindings
import nacl.exceptions
import nacl.utils
import numpy as np
import pandas as pd

from .channel import PeerChannel, new_keypair
from .data import as_table_file, read_table
from .errors import InputError, ProtocolError
from .ids import prepare_ids
from .runtime import party_step
from .wire import Message, blinded_ids, ciphertext, public, size

BRAND, MEDIA = "brand", "media"
MODES = ("both", "labelled")

# --- Group parameters -------------------------------------------------------------------
# Curve25519, RFC 7748 section 4.1: v^2 = u^3 + A u^2 + u over GF(p). The curve has order
# 8 * l with l a 253-bit prime; X25519 clamps every scalar to a multiple of 8, so the
# product of a clamped scalar and any point of the curve lies in the order-l subgroup.
FIELD_PRIME = 2**255 - 19
MONTGOMERY_A = 486662
POINT_BYTES = 32  # a Montgomery u-coordinate, little-endian (RFC 7748 section 5)
SCALAR_BYTES = nacl.bindings.crypto_scalarmult_SCALARBYTES

HASH_DOMAIN = b"fedscore/psi/v1/curve25519/sha512-try-and-increment"
"""Domain separator of the hash onto the curve; the run id is appended per run."""

HASH_TO_CURVE_MAX_TRIES = 256
"""Each try lands on the curve with probability 1/2 (the other half is the twist), so
256 tries all fail with probability 2^-256."""

WORKERS = os.cpu_count() or 1
"""Threads that hash and blind: PyNaCl releases Python's GIL around libsodium calls, so
threads use every core without copying keys into worker processes."""

PARALLEL_MIN_ITEMS = 4096
"""Below this many IDs the work is done in the calling thread: threads would not pay."""

_SEAL_LABEL = "psi.double_blinded"
_POINT_DTYPE = np.dtype((np.bytes_, POINT_BYTES))


# --- Party-local group operations -------------------------------------------------------

def hash_domain(run_id):
    """The per-run domain separator: the same IDs hash to unrelated points in every run."""
    return HASH_DOMAIN + b"/" + run_id.encode("utf-8")


def _hash_and_blind(ids, key, domain):
    """Hash each ID onto the curve (try and increment) and multiply it by ``key``.

    Try and increment, as in Google's private-join-and-compute (there on P-256):
    SHA-512 of (domain, ID, counter) reduced mod p is accepted as a u-coordinate when
    u^3 + A u^2 + u is a non-zero square, i.e. when u lies on the curve rather than
    on its twist; otherwise the counter is incremented.
    """
    prefix = hashlib.sha512(len(domain).to_bytes(2, "big") + domain)
    out = bytearray(POINT_BYTES * len(ids))
    for i, value in enumerate(ids):
        data = value.encode("utf-8")
        for counter in range(HASH_TO_CURVE_MAX_TRIES):
            h = prefix.copy()
            h.update(data + counter.to_bytes(2, "big"))
            u = gmpy2.mpz(int.from_bytes(h.digest(), "little")) % FIELD_PRIME
            if gmpy2.jacobi(u * (u * (u + MONTGOMERY_A) + 1), FIELD_PRIME) == 1:
                break
        else:  # pragma: no cover - probability 2^-256
            raise RuntimeError("hash to curve failed")
        out[i * POINT_BYTES:(i + 1) * POINT_BYTES] = nacl.bindings.crypto_scalarmult(
            key, int(u).to_bytes(POINT_BYTES, "little"))
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, POINT_BYTES)


def _blind_received(points, key):
    """Multiply each received point by ``key`` after checking that it lies on the curve.

    Canonical encoding is checked before (:func:`_check_points`); a point of small
    order makes libsodium refuse the multiplication, which is reported too.
    """
    out = bytearray(points.nbytes)
    for i, row in enumerate(points):
        encoded = row.tobytes()
        u = gmpy2.mpz(int.from_bytes(encoded, "little"))
        if gmpy2.jacobi(u * (u * (u + MONTGOMERY_A) + 1), FIELD_PRIME) != 1:
            raise ProtocolError("a received value is not a point of the curve")
        try:
            out[i * POINT_BYTES:(i + 1) * POINT_BYTES] = nacl.bindings.crypto_scalarmult(key, encoded)
        except nacl.exceptions.RuntimeError:
            raise ProtocolError("a received value is a point of small order") from None
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, POINT_BYTES)


def _in_parallel(fn, items, *args):
    """Run ``fn(chunk, *args)`` over chunks of ``items`` on :data:`WORKERS` threads.

    ``fn`` returns an ``(n, 32)`` array per chunk; the results are concatenated in order.
    """
    if len(items) < PARALLEL_MIN_ITEMS or WORKERS == 1:
        return fn(items, *args)
    bounds = np.linspace(0, len(items), 4 * WORKERS + 1).astype(int)
    with ThreadPoolExecutor(WORKERS) as pool:
        parts = pool.map(lambda lo, hi: fn(items[lo:hi], *args), bounds[:-1], bounds[1:])
        return np.concatenate(list(parts))


def _check_points(value, name, expected=None):
    """Validate the structure of received curve points; return them as ``(n, 32)`` uint8.

    Every value must be the canonical encoding of a non-zero u-coordinate (0 < u < p).
    Membership of the curve is checked where a point is multiplied
    (:func:`_blind_received`); points that are only compared need no more: a value off
    the curve can never equal one of ours, which all lie on it.
    """
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 2 \
            or value.shape[1] != POINT_BYTES:
        raise ProtocolError(f"{name} must be an (n, {POINT_BYTES}) array of bytes")
    if expected is not None and len(value) != expected:
        raise ProtocolError(f"{name} holds {len(value)} values, expected {expected}")
    top = value[:, -1]
    # u >= p = 2^255 - 19 iff the top bit is set, or the value is 2^255-19 .. 2^255-1.
    too_large = (top >= 0x80) | ((top == 0x7F) & (value[:, 1:-1] == 0xFF).all(axis=1) & (value[:, 0] >= 0xED))
    zero = ~value.any(axis=1)
    bad = np.flatnonzero(too_large | zero)
    if len(bad):
        raise ProtocolError(f"{name}: value {int(bad[0])} is not a canonical non-zero curve coordinate")
    return value


def _as_keys(points):
    """View ``(n, 32)`` points as fixed-width byte strings, for sorting and matching."""
    return np.ascontiguousarray(points).view(_POINT_DTYPE).ravel()


def _random_permutation(n):
    """A uniformly random permutation drawn from the OS's cryptographic generator."""
    return np.argsort(np.frombuffer(nacl.utils.random(8 * n), dtype=np.uint64), kind="stable")


# --- Coordinator ------------------------------------------------------------------------

def intersect(coordinator, *, mode="both", id_column="id", id_kind="auto", min_intersection=0,
              write_output=False):
    """Run PSI between the brand and the media as one phase of a coordinator job.

    Parameters
    ----------
    coordinator : fedscore.runtime.Coordinator
    mode : {"both", "labelled"}
    id_column : str
        The ID column's name; a party's local config ``id_column`` overrides it.
    id_kind : {"auto", "email", "phone", "hashed", "text"}
        Normalisation rule (:mod:`fedscore.ids`).
    min_intersection : int
        Fewer matched IDs than this stops the run with an error raised by the party
        that learns the count (both parties in ``both`` mode, the brand in ``labelled``).
    write_output : bool
        Write each party's result files into its output folder (the ``psi`` job).

    Returns
    -------
    dict
        ``mode``, each party's ID counts (``rows``, ``unique``, ``empty``,
        ``duplicates``) and, in ``both`` mode only, ``intersection``.

    Notes
    -----
    Three round trips in ``both`` mode, three in ``labelled`` mode (the last to the
    brand alone). Party states afterwards: see the module docstring.
    """
    if mode not in MODES:
        raise InputError(f"PSI mode must be one of {', '.join(MODES)}, not {mode!r}")
    missing = {BRAND, MEDIA} - set(coordinator.roles)
    if missing:
        raise ProtocolError(f"PSI needs a brand and a media party (missing: {', '.join(sorted(missing))})")
    setup = Message(mode=public(mode), id_column=public(id_column), id_kind=public(id_kind),
                    min_intersection=public(int(min_intersection)), write_output=public(bool(write_output)))
    own = coordinator.exchange({BRAND: ("psi.blind_own", setup), MEDIA: ("psi.blind_own", setup)})

    peer = {BRAND: MEDIA, MEDIA: BRAND}
    blinded = coordinator.exchange({
        role: ("psi.blind_peer", Message(points=blinded_ids(own[other]["points"]),
                                         channel_key=public(own[other]["channel_key"])))
        for role, other in peer.items()
    })

    summary = {"mode": mode}
    for role in (BRAND, MEDIA):
        summary[role] = {k: own[role][k] for k in ("rows", "unique", "empty", "duplicates")}
    if mode == "both":
        matched = coordinator.exchange({
            role: ("psi.match", Message(sealed=ciphertext(blinded[other]["sealed"])))
            for role, other in peer.items()
        })
        if matched[BRAND]["matched"] != matched[MEDIA]["matched"]:
            raise ProtocolError(f"the parties found intersections of different sizes "
                                f"({matched[BRAND]['matched']} and {matched[MEDIA]['matched']})")
        summary["intersection"] = matched[BRAND]["matched"]
    else:
        coordinator.call(BRAND, "psi.match", Message(sealed=ciphertext(blinded[MEDIA]["sealed"])))
    return summary


def run_psi(coordinator, options):
    """The ``psi`` job: match IDs and write each party's result files.

    Options: ``mode`` (``both``), ``id_column`` (``id``), ``id_kind`` (``auto``),
    ``min_intersection`` (0).
    """
    return intersect(coordinator, mode=options.get("mode", "both"), id_column=options.get("id_column", "id"),
                     id_kind=options.get("id_kind", "auto"), min_intersection=options.get("min_intersection", 0),
                     write_output=True)


# --- Party steps ------------------------------------------------------------------------

@party_step("psi.blind_own")
def blind_own(party, msg):
    """Normalise this party's IDs, hash them onto the curve and blind them with a fresh key.

    Replies with the blinded set (shuffled, except the media's in ``labelled`` mode,
    which must keep the media's PSI order), its ID counts and a channel public key.
    """
    mode = msg["mode"]
    if mode not in MODES:
        raise ProtocolError(f"unknown PSI mode {mode!r}")
    path = party.config["data"]
    column = party.config.get("id_column") or msg["id_column"]
    written = read_table(path, columns=[column])[column].str.strip().to_numpy(dtype=object)
    prepared = prepare_ids(written, msg["id_kind"], path=path, column=column)
    key = nacl.utils.random(SCALAR_BYTES)
    points = _in_parallel(_hash_and_blind, prepared.ids, key, hash_domain(party.run_id))
    keep_order = mode == "labelled" and party.role == MEDIA
    order = np.arange(len(points)) if keep_order else _random_permutation(len(points))
    channel_secret, channel_public = new_keypair()
    party.state["_psi"] = {
        "mode": mode, "key": key, "order": order, "channel_secret": channel_secret,
        "column": column, "rows": prepared.rows, "ids": written[prepared.rows],
        "report": prepared.report.to_dict(), "min_intersection": int(msg["min_intersection"]),
        "write_output": bool(msg["write_output"]),
    }
    report = prepared.report
    return Message(points=blinded_ids(points[order]), channel_key=public(channel_public),
                   rows=size(report.rows), unique=size(report.unique), empty=size(report.empty),
                   duplicates=size(report.duplicates))


@party_step("psi.blind_peer")
def blind_peer(party, msg):
    """Blind the peer's set with this party's key.

    The double-blinded peer set goes back to the peer, sealed, except in ``labelled``
    mode at the brand, which keeps it to look up the media's IDs and sends nothing.
    """
    scratch = _scratch(party)
    peer_points = _check_points(msg["points"], "peer's blinded IDs")
    channel = _channel(party, scratch, msg["channel_key"])
    double = _in_parallel(_blind_received, peer_points, scratch["key"])
    scratch["peer_size"] = len(peer_points)
    scratch["peer_channel_key"] = msg["channel_key"]
    if scratch["mode"] == "both" or party.role == BRAND:
        scratch["peer_double"] = double
    if scratch["mode"] == "labelled" and party.role == BRAND:
        return Message()
    if scratch["mode"] == "labelled":  # the media: its part ends here, knowing only the brand's set size
        party.state["psi"] = {"mode": "labelled", "rows": scratch["rows"], "size": len(scratch["rows"]),
                              "peer_size": len(peer_points)}
        _write_outputs(party, scratch, {})
        del party.state["_psi"]
    return Message(sealed=ciphertext(channel.seal(double.tobytes(), _SEAL_LABEL)))


@party_step("psi.match")
def match(party, msg):
    """Open this party's own set, double-blinded by the peer, and compare it with the peer's.

    ``both`` mode: keeps the intersection in the shared order and replies with its size.
    ``labelled`` mode (brand only): keeps the match flags in the media's PSI order and
    replies with nothing.
    """
    scratch = _scratch(party)
    mode = scratch["mode"]
    if mode == "labelled" and party.role != BRAND:
        raise ProtocolError("in labelled mode only the brand matches")
    channel = _channel(party, scratch, scratch["peer_channel_key"])
    opened = np.frombuffer(channel.open(msg["sealed"], _SEAL_LABEL), dtype=np.uint8)
    if len(opened) % POINT_BYTES:
        raise ProtocolError("double-blinded IDs are not a whole number of points")
    returned = _check_points(opened.reshape(-1, POINT_BYTES), "own double-blinded IDs", expected=len(scratch["order"]))
    own_double = np.empty_like(returned)
    own_double[scratch["order"]] = returned  # undo this party's shuffle: row i is own ID i again
    own_keys = _as_keys(own_double)
    if len(np.unique(own_keys)) != len(own_keys):
        raise ProtocolError("the peer returned repeated double-blinded values")
    _, own_index, peer_index = np.intersect1d(own_keys, _as_keys(scratch["peer_double"]),
                                              assume_unique=True, return_indices=True)
    matched = len(own_index)
    if matched < scratch["min_intersection"]:
        # In labelled mode the count is the brand's alone: the error reaches the coordinator without it.
        found = f"only {matched} IDs" if mode == "both" else "fewer IDs than the minimum"
        raise InputError(f"{found} matched; at least {scratch['min_intersection']} are needed")
    if mode == "both":
        party.state["psi"] = {"mode": "both", "ids": scratch["ids"][own_index], "rows": scratch["rows"][own_index],
                              "size": len(own_keys), "peer_size": scratch["peer_size"]}
        _write_outputs(party, scratch, {"intersection": matched},
                       {"intersection.csv": pd.DataFrame({scratch["column"]: party.state["psi"]["ids"]})})
        reply = Message(matched=size(matched))
    else:
        flags = np.zeros(scratch["peer_size"], dtype=bool)
        flags[peer_index] = True
        brand_rows = np.full(scratch["peer_size"], -1, dtype=np.int64)
        brand_rows[peer_index] = scratch["rows"][own_index]
        party.state["psi"] = {"mode": "labelled", "flags": flags, "brand_rows": brand_rows, "matched": matched,
                              "size": len(own_keys), "peer_size": scratch["peer_size"]}
        ids = np.full(scratch["peer_size"], "", dtype=object)
        ids[peer_index] = scratch["ids"][own_index]
        _write_outputs(party, scratch, {"matched": matched},
                       {"match_flags.csv": pd.DataFrame({"matched": flags.astype(int), scratch["column"]: ids})})
        reply = Message()
    del party.state["_psi"]
    return reply


def _scratch(party):
    try:
        return party.state["_psi"]
    except KeyError:
        raise ProtocolError("PSI step out of order: psi.blind_own has not run") from None


def _channel(party, scratch, peer_key):
    peer = MEDIA if party.role == BRAND else BRAND
    return PeerChannel(scratch["channel_secret"], peer_key, own_role=party.role, peer_role=peer, run_id=party.run_id)


def _write_outputs(party, scratch, result, tables=None):
    """Write this party's result files into its own output folder, when the job asks."""
    if not scratch["write_output"]:
        return
    out = Path(party.config["out"])
    for name, table in (tables or {}).items():
        table.to_csv(out / name, index=False)
    report = {"ids": scratch["report"], "peer_set_size": scratch["peer_size"], **result}
    (out / "psi_report.json").write_text(json.dumps(report, indent=2) + "\n")


# --- Library entry point ----------------------------------------------------------------

@dataclass
class PSIResult:
    """What a PSI run produced, read back from its output folder.

    Attributes
    ----------
    out : Path
    summary : dict
        The job's public summary: mode, each party's ID counts and, in ``both`` mode,
        the intersection size.
    brand : pandas.DataFrame
        ``both``: the matched IDs as the brand spells them, in the shared order.
        ``labelled``: the brand's match flags over the media's PSI order.
    media : pandas.DataFrame or None
        ``both``: the matched IDs as the media spells them, in the same order.
        ``labelled``: None (the media learns no match).
    """

    out: Path
    summary: dict
    brand: pd.DataFrame
    media: pd.DataFrame | None


def psi(brand, media, *, id_column, out, mode="both", id_kind="auto", min_intersection=0,
        engine="local", overwrite=False, timeout=600.0, resume=False):
    """Match the brand's and the media's IDs without either seeing the other's other IDs.

    Parameters
    ----------
    brand, media : path or pandas.DataFrame
        Each party's table; only ``id_column`` is read.
    id_column : str
    out : path
        Output folder (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``),
        written atomically.
    mode : {"both", "labelled"}
    id_kind : {"auto", "email", "phone", "hashed", "text"}
    min_intersection : int
        Fewer matched IDs than this stops the run with an error.
    engine : {"local", "simulation", "deployment"}
    overwrite : bool
    timeout : float
        Seconds to wait for a party's reply before the run stops naming it.
    resume : bool
        Go on from the checkpoint a failed attempt of the same run left beside ``out``.

    Returns
    -------
    PSIResult

    Examples
    --------
    >>> result = psi("brand.csv", "media.csv", id_column="email", out="run")  # doctest: +SKIP
    >>> result.summary["intersection"]  # doctest: +SKIP
    3000
    """
    from .runtime.runner import run_job

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="fedscore-psi-") as tmp:
        parties = {BRAND: {"data": str(as_table_file(brand, Path(tmp) / "brand.csv"))},
                   MEDIA: {"data": str(as_table_file(media, Path(tmp) / "media.csv"))}}
        options = {"mode": mode, "id_column": id_column, "id_kind": id_kind,
                   "min_intersection": int(min_intersection)}
        summary = run_job("psi", options, parties, out, engine=engine, overwrite=overwrite, timeout=timeout,
                          resume=resume)
    if mode == "both":
        brand_ids, media_ids = (pd.read_csv(out / role / "intersection.csv", dtype=str, keep_default_na=False)
                                for role in (BRAND, MEDIA))
        return PSIResult(out=out, summary=summary, brand=brand_ids, media=media_ids)
    flags = pd.read_csv(out / BRAND / "match_flags.csv", dtype={id_column: str}, keep_default_na=False)
    return PSIResult(out=out, summary=summary, brand=flags, media=None)
