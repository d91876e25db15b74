"""Checkpoints: a run that stopped (a party died, a timeout) resumes from its last completed round.

A protocol is a coordinator function that drives rounds of requests; it has no notion of
saving itself. What makes a run resumable without touching the protocols is that its
coordinator is deterministic given the parties' replies, and each party is a state that
changes only when it answers a request. So a checkpoint is two things:

- the coordinator's **journal**: every completed exchange (the requests' step, sequence
  number and digest, and the replies as they arrived);
- each party's **snapshot**: its state, run id and last sequence number after every step
  it answered, with its last reply.

On resume the coordinator function runs again from the start. While the journal lasts,
each exchange is answered from it, nothing is sent, and the requests the function builds
are checked against the journal's digests (a different job, option or file would build
different requests: the resume is refused rather than mixed with the old run). Then it
goes on live, with the same run id and sequence numbers. Each party restores its snapshot;
a party that had already answered the first live request (its peer failed in the same
round) sends its recorded reply again instead of computing a new one, so nothing it
released is released twice with fresh randomness (two floodings of one value would
average out).

Notes
-----
A party's snapshot holds its secret keys (its HE secret key, its PSI scalar). It is
written with owner-only permissions into a folder of its own, beside its outputs, and
deleted when the run succeeds; a failed run's checkpoint is as sensitive as the party's
data and should be deleted when it will not be resumed. The journal holds only what
the coordinator saw anyway. Both are pickles: they are read back only by the process
that wrote them (or its successor on the same machine), never received from another
party.
"""

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

from ..errors import InputError, ProtocolError

CHECKPOINT_SUFFIX = ".checkpoint"
"""The checkpoint of output folder ``DIR`` is ``DIR.checkpoint`` beside it."""
JOURNAL_HEADER = "journal.json"
JOURNAL_FILE = "journal.pickle"
LEDGER_FILE = "ledger.jsonl"
"""The run's ledger lives in the checkpoint while the run goes on, so a resumed run's
ledger holds every message of both attempts."""
_DIGEST_BYTES = 16


def checkpoint_dir(out_dir):
    """The checkpoint folder of output folder ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + CHECKPOINT_SUFFIX)


def snapshot_path(folder, role):
    """Where a party's snapshot is written, in its own folder (created owner-only)."""
    party_folder = Path(folder) / role
    party_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return party_folder / "party.pickle"


def request_digest(fields):
    """Digest of a request's encoded fields, to check that a replayed run builds the same requests."""
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for name in sorted(fields):
        digest.update(name.encode("utf-8") + b"\0" + len(fields[name]).to_bytes(8, "little") + fields[name])
    return digest.hexdigest()


def start(out_dir, *, job, options, run_id, resume):
    """Create (or, resuming, open) the checkpoint of a run; return ``(folder, run_id)``.

    Raises
    ------
    InputError
        Resuming without a checkpoint, or with one of another job or other options.
    """
    folder = checkpoint_dir(out_dir)
    header = {"job": job, "options": options}
    if resume:
        try:
            saved = json.loads((folder / JOURNAL_HEADER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError("no checkpoint to resume from (run without --resume to start afresh)",
                             path=folder) from None
        if {"job": saved["job"], "options": saved["options"]} != json.loads(json.dumps(header)):
            raise InputError(f"the checkpoint is of another run (job {saved['job']!r} with other options): "
                             "resume with the same command, or run without --resume", path=folder)
        return folder, saved["run_id"]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700, parents=True)
    _write_atomically(folder / JOURNAL_HEADER, json.dumps({**header, "run_id": run_id}).encode("utf-8"))
    return folder, run_id


def finish(folder):
    """Delete a checkpoint once its run has succeeded: it holds the parties' secret keys."""
    shutil.rmtree(folder, ignore_errors=True)


class Journal:
    """The coordinator's record of completed exchanges, and their replay on resume.

    Parameters
    ----------
    folder : path
        The run's checkpoint folder.
    run_id : str
        The run the journal belongs to: a journal of another run is refused, never replayed.
    """

    def __init__(self, folder, run_id):
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = Path(folder) / JOURNAL_FILE
        self.run_id = run_id
        self._recorded = []
        if self.path.exists():
            with open(self.path, "rb") as f:
                journaled_run = pickle.load(f)["run_id"]
                if journaled_run != run_id:
                    raise ProtocolError(f"{self.path} is the journal of run {journaled_run!r}, not of {run_id!r}: "
                                        "resume with that run's id, or use another checkpoint folder")
                while True:
                    try:
                        self._recorded.append(pickle.load(f))
                    except EOFError:
                        break
        self._next = 0

    @property
    def replaying(self):
        """Whether the next exchange is answered from the journal."""
        return self._next < len(self._recorded)

    def replay(self, requests):
        """Return the recorded replies of the next exchange, after checking its requests are the same."""
        keys, replies = self._recorded[self._next]
        built = [(r.role, r.step, r.seq, request_digest(r.fields)) for r in requests]
        if built != keys:
            first = next((b for b, k in zip(built, keys) if b != k), built[0] if built else None)
            raise ProtocolError(
                f"the resumed run no longer follows its checkpoint at message {first[2] if first else '?'} "
                f"({first[1] if first else 'end'}): resume needs the same command, options and files"
            )
        self._next += 1
        return replies

    def record(self, requests, replies):
        """Append one completed exchange (flushed to disk before the run goes on)."""
        keys = [(r.role, r.step, r.seq, request_digest(r.fields)) for r in requests]
        with open(self.path, "ab") as f:
            if f.tell() == 0:
                pickle.dump({"run_id": self.run_id}, f, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump((keys, list(replies)), f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        self._recorded.append((keys, list(replies)))
        self._next = len(self._recorded)


def save_snapshot(path, snapshot):
    """Write a party's snapshot owner-only, atomically (a crash mid-write keeps the previous one)."""
    _write_atomically(Path(path), pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL))


def load_snapshot(path):
    """A party's last snapshot, or ``None`` if it never answered a request."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        return None


def _write_atomically(path, data):
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
