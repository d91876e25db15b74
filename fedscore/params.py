"""Security parameters, thresholds and defaults, each with its source.

Every protocol takes its numbers from here so that a reviewer finds them in one place.
"""

# --- Paillier -------------------------------------------------------------------------
# NIST SP 800-57 Part 1 Rev. 5, Table 2: a 3072-bit RSA/factoring modulus gives 128-bit
# security; 2048 bits gives 112. Paillier's security rests on factoring n.
PAILLIER_KEY_BITS = 3072
PAILLIER_MIN_KEY_BITS = 2048  # accepted only when explicitly allowed, with a warning

# --- CKKS ------------------------------------------------------------------------------
# HomomorphicEncryption.org security standard (Albrecht et al., 2018), Table 1,
# classical 128-bit security, ternary secret: largest total coefficient modulus (bits)
# for each ring dimension N.
CKKS_MAX_COEFF_MODULUS_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
CKKS_POLY_MODULUS_DEGREE = 8192
CKKS_COEFF_MOD_BIT_SIZES = (60, 40, 40, 60)  # 200 bits <= 218 for N = 8192
CKKS_GLOBAL_SCALE_BITS = 40

# Flooding: a CKKS decryption returned to another party carries the decryptor's noise,
# which leaks the secret key (Li & Micciancio, EUROCRYPT 2021). Before release, values
# are rounded to a fixed grid and Gaussian noise this many bits above the worst-case
# CKKS error is added, so the released value's distribution is statistically
# independent of the ciphertext noise up to about 2^-STATISTICAL_SECURITY_BITS.
STATISTICAL_SECURITY_BITS = 40

# --- Private set intersection ----------------------------------------------------------
ID_KINDS = ("auto", "email", "phone", "hashed", "text")
"""How IDs are normalised (:mod:`fedscore.ids`): ``auto`` decides per value, the others force one rule."""
PSI_MIN_INTERSECTION = 100  # clean-room minimum matched users (AWS Clean Rooms ML: 100+)

# --- Clean-room release thresholds ------------------------------------------------------
MIN_SEED_SIZE = 100  # AWS Clean Rooms ML lookalike: minimum 500 in production; 100 for tests
MIN_SEGMENT_SIZE = 50  # segments smaller than this are not profiled to the other party

# --- Models and differential privacy ----------------------------------------------------
DEFAULT_L2 = 1e-4
"""L2 penalty on the mean logistic loss (scikit-learn's ``C = 1 / (l2 n)``); the intercept
is not penalised. Every logistic model of fedscore (lookalike, propensity, horizontal LR)."""

DP_DELTA = 1e-6
"""Target delta: well below ``1 / rows`` for every table fedscore is meant for (up to about
10^5 rows per party), the usual requirement for (epsilon, delta)-DP to be meaningful
(Dwork & Roth, *The Algorithmic Foundations of Differential Privacy*, 2014, section 2.3)."""

DP_CLIP_NORM = 1.0
"""Per-row gradient clipping norm ``C`` of DP-SGD (horizontal LR). On standardised features a
logistic-loss row gradient ``(p - y) x`` has norm about ``|p - y| sqrt(d)``; clipping at 1
keeps its direction and bounds the sensitivity (Abadi et al., CCS 2016, section 3.1)."""

LABEL_DP_CLIP_NORM = 3.0
"""Label DP in the vertical protocols (lookalike, propensity): each party clips its
standardised feature rows to this L2 norm, so that changing one user's label moves the
label aggregate ``Xᵀy`` by at most this much per party's block (plus 1 for an intercept).
Clipping scales a row down and keeps its direction; the model's quality with and
without it is measured in ``benchmarks/bench_attacks.py``."""

# --- Scoring ---------------------------------------------------------------------------
DEFAULT_CHUNK_ROWS = 1 << 18
"""Rows scored at a time: about 60 MB of encoded features for 28 model features, and
large enough that per-chunk overheads stay below a few percent of the work (see
``benchmarks/bench_scoring.py``)."""

UNSEEN_POLICIES = ("error", "zero")
"""What to do with a text value the encoder did not see when fitted: refuse it, or set none
of the column's categories (what one-hot encoding gives a value outside its list)."""

# --- The demo --------------------------------------------------------------------------
DEMO_OUT = "fedscore-demo"  # the demo's output folder, in the folder it is run from
