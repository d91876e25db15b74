"""In-process transport: every party in this process, every message really encoded.

Used by tests and by the library API when both parties' files are on one machine. Each
message is encoded to bytes and decoded again on the other side, exactly as over Flower,
so nothing but the encoded fields ever reaches another party's code.
"""

from ..errors import FedscoreError, OptionsError
from ..wire import Message
from .coordinator import Reply
from .party import PartyContext, has_identity_settings, pin_every_party


class LocalTransport:
    """Hold one :class:`PartyContext` per role and run their steps in turn.

    Parameters
    ----------
    party_configs : dict of role to dict
        Each party's local configuration (data paths, output folder, options).

    Notes
    -----
    Whoever builds this transport plays every party, so when no party's config names an
    identity, one is made here for each party (in memory) and pinned at every party, as
    the local engine does (:func:`~fedscore.runtime.party.pin_every_party`). Once one
    config names an identity or a pin, nothing is made: each party then needs its own.
    """

    def __init__(self, party_configs):
        if not any(has_identity_settings(cfg) for cfg in party_configs.values()):
            party_configs = pin_every_party(party_configs)
        self.parties = {role: PartyContext.restore(role, cfg) for role, cfg in party_configs.items()}

    @property
    def roles(self):
        return list(self.parties)

    def exchange(self, requests, timeout=None):
        replies = []
        for request in requests:
            party = self.parties[request.role]
            message = Message.decode(request.fields, request.payloads)
            try:
                reply = party.handle(request.step, request.run_id, request.seq, message, request.job)
            except FedscoreError as exc:
                replies.append(Reply(request.role, error=str(exc), options_error=isinstance(exc, OptionsError)))
                continue
            fields, payloads = reply.encode()
            replies.append(Reply(request.role, fields, payloads))
        return replies
