"""Fixtures shared by the protocol tests."""

import pytest

from fedscore.he.ckks import CKKSContext


@pytest.fixture
def decryptions(monkeypatch):
    """Record every raw CKKS decryption and whether it happened inside decrypt_release."""
    calls = []
    inside = []
    original_decrypt, original_release = CKKSContext.decrypt, CKKSContext.decrypt_release

    def decrypt(self, vector):
        calls.append(bool(inside))
        return original_decrypt(self, vector)

    def decrypt_release(self, vector, bound, message_bound=None):
        inside.append(True)
        try:
            return original_release(self, vector, bound, message_bound)
        finally:
            inside.pop()

    monkeypatch.setattr(CKKSContext, "decrypt", decrypt)
    monkeypatch.setattr(CKKSContext, "decrypt_release", decrypt_release)
    return calls
