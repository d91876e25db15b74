"""The privacy ledger: a record of every message that crossed a party boundary.

An entry says who sent what kind of message to whom, how many bytes it took and what
*category* of payload each field held (ciphertext, blinded identifiers, ...). It never
holds a value. The ledger is written as JSON lines, one entry per message hop, so that a
reviewer can replay a run's transcript against the protocol's spec in ``protocols/``.
"""

import enum
import json
import threading
import time
from pathlib import Path


class Payload(str, enum.Enum):
    """What a message field holds, as far as privacy is concerned."""

    CIPHERTEXT = "ciphertext"
    """Encrypted under a key the receiver may or may not hold (see the spec)."""
    BLINDED_IDS = "blinded_ids"
    """Identifiers raised to a secret exponent: unlinkable without the exponent."""
    MASKED = "masked_value"
    """A plaintext hidden by a random mask (or an order-preserving affine mask)."""
    PUBLIC_PARAMETER = "public_parameter"
    """Public keys, public HE contexts, protocol parameters and hyper-parameters."""
    AGGREGATE = "aggregate"
    """An aggregate released by design: counts, AUC, noisy statistics, profiles."""
    SIZE = "size"
    """A count of rows, items or ciphertexts."""
    OUTPUT = "output"
    """A per-row result the protocol exists to deliver (e.g. a user's segment)."""
    CONTROL = "control"
    """Protocol control: a step's name, an acknowledgement, a status."""


COORDINATOR = "coordinator"
"""The role name of the coordinator (the Flower ServerApp); it holds no decryption key."""


class Ledger:
    """Collects ledger entries in memory and optionally streams them to a JSON-lines file.

    Parameters
    ----------
    path : str or Path, optional
        Where to append entries as they are recorded. Without it, entries are kept only
        in :attr:`entries`.
    run_id : str, optional
        Written into every entry so that transcripts of different runs cannot be mixed.
    """

    def __init__(self, path=None, run_id=None):
        # A resumed run appends to the ledger of its earlier attempt and numbers on from it.
        self.entries = read_ledger(path) if path is not None and Path(path).exists() else []
        self.run_id = run_id
        self._path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8") if path is not None else None

    def record(self, *, sender, receiver, step, fields):
        """Record one message hop.

        Parameters
        ----------
        sender, receiver : str
            Role names (``"brand"``, ``"media"``, ``"coordinator"``, party names).
        step : str
            The message kind (the protocol step it requests or answers).
        fields : dict of str to (Payload, int)
            Each field's payload category and encoded size in bytes.
        """
        entry = {
            "seq": len(self.entries),
            "time": round(time.time(), 3),
            "run_id": self.run_id,
            "sender": sender,
            "receiver": receiver,
            "step": step,
            "bytes": int(sum(size for _, size in fields.values())),
            "fields": {
                name: {"payload": Payload(payload).value, "bytes": int(size)}
                for name, (payload, size) in fields.items()
            },
        }
        with self._lock:
            entry["seq"] = len(self.entries)
            self.entries.append(entry)
            if self._file is not None:
                self._file.write(json.dumps(entry) + "\n")
                self._file.flush()
        return entry

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def summary(self):
        """Bytes and message counts per direction and per payload category."""
        directions = {}
        for entry in self.entries:
            key = f"{entry['sender']} -> {entry['receiver']}"
            d = directions.setdefault(key, {"messages": 0, "bytes": 0, "payloads": {}})
            d["messages"] += 1
            d["bytes"] += entry["bytes"]
            for field in entry["fields"].values():
                d["payloads"][field["payload"]] = d["payloads"].get(field["payload"], 0) + field["bytes"]
        return directions


def read_ledger(path):
    """Read a JSON-lines ledger file back into a list of entries."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
