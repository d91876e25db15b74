"""What the horizontal protocols share: ciphertexts added by the coordinator, and the two-party warning.

In horizontal KMeans and horizontal logistic regression, every party encrypts a vector
of its own, the coordinator adds the ciphertexts under the public context it holds (its
only computation), and every party decrypts the sum. With two contributors the sum
minus one's own share is the other's share: encryption hides nothing between them.
"""


class PrivacyWarning(UserWarning):
    """A run configuration that gives a party less privacy than it may expect."""


def add_ciphertexts(context, blobs):
    """Add the parties' encrypted vectors under ``context`` (checks key and integrity); return the sum's bytes."""
    vectors = [context.load_vector(b) for b in blobs]
    total = vectors[0]
    for vector in vectors[1:]:
        total = total + vector
    return total.to_bytes()
