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
PSI_MIN_INTERSECTION = 100  # clean-room minimum matched users (AWS Clean Rooms ML: 100+)

# --- Clean-room release thresholds ------------------------------------------------------
MIN_SEED_SIZE = 100  # AWS Clean Rooms ML lookalike: minimum 500 in production; 100 for tests
MIN_SEGMENT_SIZE = 50  # segments smaller than this are not profiled to the other party
