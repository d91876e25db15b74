"""A key owner decrypts only what the protocol says it will: a cheating peer's requests are refused.

Each test replaces one honest party step by a cheating one (the local engine runs every
party in this process, so the step table can be patched) and runs the real protocol. The
key owner's checks (:class:`fedscore.kit.release.KeyOwner`) must stop the run with an
error naming the release. Where a cheat cannot be told from the protocol's own message
by its shape (a same-length selection of Paillier ciphertexts), the test measures what it
gains instead: the spec states that bound.
"""

import numpy as np
import pandas as pd
import pytest

from fedscore.api.lookalike import lookalike
from fedscore.api.propensity import propensity
from fedscore.errors import FedscoreError, ProtocolError
from fedscore.he import load_context
from fedscore.kit.release import Expected, KeyOwner, Product
from fedscore.metrics import auc
from fedscore.protocols import STEPS, _load
from fedscore.protocols.vertical_lr import (
    VALUE_SHIFT_BITS,
    BoundOptimizer,
    create_key,
    encrypt_scaled,
    encrypted_product,
    mask,
    masked_release_bound,
    open_values,
    split_sigmoid,
)
from fedscore.runtime.runner import run_job
from fedscore.wire import Message, ciphertext, size

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier key:UserWarning")

WEAK = {"paillier_key_bits": 1024}


PRISTINE = {step: dict(targets) for step, targets in STEPS.items()}


def honest(step, role):
    """The honest implementation of ``step`` at ``role``."""
    targets = PRISTINE[step]
    return _load(targets.get(role, targets.get("party")))


@pytest.fixture
def cheat(register_step):
    """``cheat(step, role, replace)``: at ``role``, run ``step`` honestly, then let ``replace(party, msg,
    reply)`` rewrite the reply; the other parties run it honestly. Installs add up for one step."""
    replacements = {}

    def install(step, role, replace):
        replacements.setdefault(step, {})[role] = replace

        def step_function(party, msg):
            reply = honest(step, party.role)(party, msg)
            rewrite = replacements[step].get(party.role)
            return reply if rewrite is None else rewrite(party, msg, reply)

        register_step(step, step_function)
    return install


def audience(rows=240, seed_size=40, random_state=2):
    rng = np.random.default_rng(random_state)
    ids = [f"user{i:05d}@example.com" for i in range(rows)]
    likeness = rng.random(rows)
    media = pd.DataFrame({"uid": ids, "visits": rng.poisson(3 + 6 * likeness),
                          "device": np.where(rng.random(rows) < 0.3 + 0.4 * likeness, "ios", "android")})
    chosen = np.argsort(-(likeness + 0.3 * rng.random(rows)))[:seed_size]
    return pd.DataFrame({"uid": [ids[i] for i in chosen]}), media


OPTED_OUT = {"label_dp_epsilon": float("inf"), "exclude_seed": True}
"""The releases checked here without label DP (whose noise would blur what a cheat gets), with seed
exclusion (which needs it off): the checks are the key owner's, whatever the options."""


def run_lookalike(tmp_path, backend="ckks", **options):
    seed, media = audience()
    return lookalike(seed, media, id_column="uid", out=tmp_path / "run", backend=backend, min_seed=30,
                     audience_sizes="10%", random_state=3, **{**WEAK, **OPTED_OUT, **options})


def customers(matched=160, random_state=0):
    rng = np.random.default_rng(random_state)
    n = matched + 20
    ids = np.array([f"c{i:04d}" for i in range(n)])
    spend, visits = rng.normal(size=n), rng.normal(size=n)
    label = np.where(rng.random(n) < 1 / (1 + np.exp(-(spend + visits))), "yes", "no").astype(object)
    label[rng.random(n) < 0.2] = ""
    brand = pd.DataFrame({"uid": ids, "spend": spend.round(3), "y": label})
    media = pd.DataFrame({"uid": ids[:matched], "visits": visits[:matched].round(3),
                          "clicks": rng.poisson(2, matched)})
    return brand, media


def run_propensity(tmp_path, backend="ckks", **options):
    brand, media = customers()
    return propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", backend=backend,
                      **{"epochs": 2, "random_state": 0, **WEAK, "label_dp_epsilon": None, **options})


# --- the lookalike: the brand's releases ----------------------------------------------------------

@pytest.mark.parametrize("backend", ["ckks", "paillier"])
def test_lookalike_media_sending_back_the_encrypted_flags_is_refused(tmp_path, cheat, backend):
    """In place of its masked aggregate, the media returns the labels it was given: the brand would
    decrypt every seed flag. Refused by the count (and, under CKKS, the packed layout)."""
    cheat("lookalike.label_aggregate", "media", lambda party, msg, reply: Message(aggregate=ciphertext(msg["labels"])))
    with pytest.raises(FedscoreError, match="lookalike.release_aggregate: received (240 values|a packed vector)"):
        run_lookalike(tmp_path, backend)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("backend", ["ckks", "paillier"])
def test_lookalike_media_asking_for_a_longer_vector_is_refused(tmp_path, cheat, backend):
    """One more output than the features it declared (here: the seed flag of one chosen user)."""
    def longer(party, msg, reply):
        state = party.state["lookalike"]
        design = np.hstack([state.features, np.ones((len(state.features), 2))])
        design[:, -1] = 0.0
        design[5, -1] = 1.0  # user 5's flag
        aggregate, shift, bound = encrypted_product(state.labels, design, 1.0, bound=float(len(design)))
        masked, state.mask = mask(aggregate, bound, shift)
        return Message(aggregate=ciphertext(masked.to_bytes()))

    cheat("lookalike.label_aggregate", "media", longer)
    with pytest.raises(FedscoreError, match="received 5 values to decrypt, the protocol releases 4: refused"):
        run_lookalike(tmp_path, backend)


def test_lookalike_media_sending_back_the_flags_as_held_out_aggregates_is_refused(tmp_path, cheat):
    cheat("lookalike.train", "media",
          lambda party, msg, reply: Message(holdout=ciphertext(party.state["lookalike"].labels.to_bytes())))
    with pytest.raises(FedscoreError, match="lookalike.evaluate: received"):
        run_lookalike(tmp_path, exclude_seed=False)


@pytest.mark.parametrize("what", ["everyone", "a sum", "a multiple"])
def test_seed_exclusion_releases_exactly_k_single_bits(tmp_path, cheat, what):
    """The brand counts K itself and releases only values that are exactly 0 or 1: a selection of
    everyone, a sum of several flags or a multiple of one is refused."""
    def greedy(party, msg, reply):
        state = party.state["lookalike"]
        if what == "everyone":
            asked = state.flags.take(range(state.flags.size))
        elif what == "a sum":
            asked, total = state.flags.take(state.selected), state.flags.take([0])
            for i in range(1, state.flags.size):
                total = total + state.flags.take([i])
            asked.pairs[0] = total.pairs[0]  # every flag added up, in one place
        else:
            asked = state.flags.take(state.selected)
            asked = asked + asked  # twice each flag: a seed member shows as 2
        return Message(flags=ciphertext(asked.to_bytes()))

    cheat("lookalike.select", "media", greedy)
    message = "received 240 values to decrypt, the protocol releases 64" if what == "everyone" else \
        "not a single 0/1 flag"
    with pytest.raises(FedscoreError, match=message):
        run_lookalike(tmp_path)


def test_seed_exclusion_bits_are_masked_and_shuffled_for_the_brand(tmp_path, monkeypatch):
    """What the brand releases are uniform bits: the media XOR-ed each flag with its own random bit."""
    seen = []
    release_bits = KeyOwner.release_bits

    def spy(self, data, expected):
        bits = release_bits(self, data, expected)
        seen.append(bits)
        return bits

    monkeypatch.setattr(KeyOwner, "release_bits", spy)
    result = run_lookalike(tmp_path, backend="ckks")
    (bits,) = seen
    assert len(bits) == 24 + 40  # K = the largest audience (10 % of 240) + the seed list
    # 40 seed members among 240: the top 64 hold many, but the brand sees about half ones either way
    assert 0.25 < bits.mean() < 0.75
    seed_ids = set(audience()[0]["uid"])
    assert not set(result.audiences["10pct"]["uid"]) & seed_ids


def test_a_paillier_selection_of_the_right_length_is_bounded_by_the_count(tmp_path, cheat, register_step):
    """Under Paillier a same-length selection of the flags cannot be told from the aggregate by its
    shape: the media that sends one learns the flags of as many users as the aggregate has values
    (features + 1) and no more; the brand's count is what bounds it (protocols/lookalike.md)."""
    learned = {}

    def select_flags(party, msg, reply):
        state = party.state["lookalike"]
        masked, state.mask = mask(state.labels.take([0, 1, 2, 3]) * 1.0, 1.0, 0)  # features + 1 = 4 flags
        return Message(aggregate=ciphertext(masked.to_bytes()))

    def read_them(party, msg):
        learned["flags"] = party.state["lookalike"].mask.remove(
            open_values(party, msg["aggregate"], "lookalike.release_aggregate", exact=True))
        raise ProtocolError("the cheat is done")

    cheat("lookalike.label_aggregate", "media", select_flags)
    register_step("lookalike.train", read_them)
    with pytest.raises(FedscoreError, match="the cheat is done"):
        run_lookalike(tmp_path, backend="paillier", exclude_seed=False)
    assert len(learned["flags"]) == 4  # the count: not one flag more
    assert set(np.round(learned["flags"], 9)) <= {0.0, 1.0}


# --- propensity: the brand's and the media's releases ---------------------------------------------

@pytest.mark.parametrize("backend", ["ckks", "paillier"])
def test_propensity_media_sending_back_the_residual_is_refused(tmp_path, cheat, backend):
    """In place of its gradient the media returns ``[[c0]]``, the residual's constant term
    (``w (a0 - y)``: the labels): the brand refuses it by count and shape."""
    cheat("propensity.media_round", "media",
          lambda party, msg, reply: Message(brand_gradient=ciphertext(reply["brand_gradient"]),
                                            media_gradient=ciphertext(msg["coefficients"][0])))
    with pytest.raises(FedscoreError, match="propensity.brand_update: received"):
        run_propensity(tmp_path, backend)


def test_propensity_media_asking_for_a_longer_gradient_is_refused(tmp_path, cheat):
    def longer(party, msg, reply):
        state = party.state["propensity"]
        c0 = state.peer_context.load_vector(msg["coefficients"][0])
        extra = np.hstack([state.features, np.eye(len(state.features), 1)])  # one more column: user 0's c0
        aggregate, shift, bound = encrypted_product(c0, extra, 1.0, bound=float(len(extra)))
        masked, state.mask = mask(aggregate, bound, shift)
        return Message(brand_gradient=ciphertext(reply["brand_gradient"]), media_gradient=ciphertext(masked.to_bytes()))

    cheat("propensity.media_round", "media", longer)
    with pytest.raises(FedscoreError, match="received 3 values to decrypt, the protocol releases 2"):
        run_propensity(tmp_path)


def test_propensity_brand_sending_back_the_media_logits_is_refused(tmp_path, cheat):
    """The brand cheats: in place of its masked gradient it returns ``[[u]]``, the media's own vector."""
    cheat("propensity.brand_round", "brand",
          lambda party, msg, reply: Message(coefficients=ciphertext(reply["coefficients"]),
                                            gradient=ciphertext(msg["media_logit"])))
    with pytest.raises(FedscoreError, match="propensity.media_round: received"):
        run_propensity(tmp_path)


def test_propensity_brand_ranking_everyone_is_refused(tmp_path, cheat):
    """The media releases the order of exactly the users the brand may rank (validation and to
    score, a count it holds): the brand asking for every matched user is refused."""
    def everyone(party, msg, reply):
        context = load_context(msg["public_context"], allow_weak_key=True)
        logits = context.load_vector(msg["media_logits"])
        return Message(scores=ciphertext((logits * 1.0).to_bytes()), rows=size(logits.size))

    cheat("propensity.rank_mask", "brand", everyone)
    with pytest.raises(FedscoreError, match="propensity.rank_reveal: received 160 values to decrypt"):
        run_propensity(tmp_path)


@pytest.mark.parametrize("epsilon", [None, 4.0])
def test_what_a_selection_of_the_residual_would_give_the_media(tmp_path, cheat, epsilon):
    """Under Paillier a same-length selection of ``[[c0]]`` cannot be told from a gradient by its
    shape, so what ``c0`` holds is what such a cheat gets: measured here, every epoch. Without label
    DP ``c0 = w (a0 - y)``: the training users' labels. With label DP (the labels enter once, noised)
    ``c0 = w a0``, a function of the brand's partial logit alone: no label."""
    seen = []

    def observe(party, msg, reply):
        state = party.state["propensity"]
        key = state.owner.key
        c0 = key.decrypt(key.load_vector(reply["coefficients"][0])) / 2.0 ** VALUE_SHIFT_BITS[key.scheme]
        z_b = BoundOptimizer.design(state.features, True) @ state.evaluated
        a0 = split_sigmoid(z_b, state.quantiles)[:, 0]
        seen.append((c0[state.train], a0[state.train], state.labels[state.train]))
        return reply

    cheat("propensity.brand_round", "brand", observe)
    run_propensity(tmp_path, "paillier", label_dp_epsilon=epsilon)
    for c0, a0, y in seen:
        np.testing.assert_allclose(c0, a0 - y if epsilon is None else a0, atol=1e-9)
    if epsilon is None:
        assert auc(y, -c0) == 1.0  # the labels, exactly


# --- the key owner's own plan and budget ----------------------------------------------------------

def test_a_release_beyond_the_plan_is_refused():
    key = create_key("paillier", paillier_key_bits=1024, allow_weak_key=True)
    owner = KeyOwner(key, {"step": 1})
    vector = encrypt_scaled(key, np.ones(3)).dot(np.eye(3))
    expected = Expected("step", count=3, bound=masked_release_bound("paillier", 3.0), product=Product(rows=3))
    masked, _ = mask(vector, 3.0, 0)
    owner.release(masked.to_bytes(), expected)
    with pytest.raises(ProtocolError, match="release\\(s\\) at this step are made"):
        owner.release(masked.to_bytes(), expected)
    with pytest.raises(ProtocolError, match="no release at other"):
        owner.release(masked.to_bytes(), Expected("other", count=3, bound=1.0))


def test_the_label_owner_refuses_a_run_weaker_than_its_own_label_dp(tmp_path):
    """The coordinator sends the run's options; the brand's own limit (its local config) decides."""
    seed, media = audience()
    seed.to_csv(tmp_path / "seed.csv", index=False)
    media.to_csv(tmp_path / "media.csv", index=False)
    options = {"id_column": "uid", "min_seed": 30, "exclude_seed": False, "audience_sizes": "10%"}
    parties = {"brand": {"data": str(tmp_path / "seed.csv"), "max_label_dp_epsilon": 2.0},
               "media": {"data": str(tmp_path / "media.csv")}}
    for k, (weaker, said) in enumerate((({"label_dp_epsilon": "inf"}, "no label DP"), ({}, "label DP at epsilon 4"),
                                        ({"label_dp_epsilon": 8.0}, "label DP at epsilon 8"))):
        with pytest.raises(FedscoreError, match=f"the run asks for {said}, above this party's own limit of epsilon 2"):
            run_job("lookalike", {**options, **weaker}, parties, tmp_path / f"refused{k}")
    summary = run_job("lookalike", {**options, "label_dp_epsilon": 1.0}, parties, tmp_path / "run")
    assert summary["label_dp"]["epsilon"] == 1.0


def test_a_random_state_reaches_only_the_party_it_seeds(tmp_path, cheat):
    """The media's held-out split (lookalike) and the brand's validation split (propensity) are
    drawn from a run option: the other party gets the options without it."""
    got = {}

    def observe(name):
        def replace(party, msg, reply):
            got[name] = msg["options"]["random_state"]
            return reply
        return replace

    cheat("lookalike.encrypt_labels", "brand", observe("lookalike brand"))
    cheat("lookalike.load_features", "media", observe("lookalike media"))
    run_lookalike(tmp_path / "lookalike", exclude_seed=False)
    cheat("propensity.load", "brand", observe("propensity brand"))
    cheat("propensity.load", "media", observe("propensity media"))
    run_propensity(tmp_path / "propensity", epochs=1)
    assert got == {"lookalike brand": None, "lookalike media": 3, "propensity brand": 0, "propensity media": None}


# --- through Flower's simulation --------------------------------------------------------------------

CHEATING_MEDIA = '''"""Loaded at start-up by every Ray worker of one test: the media sends back the flags it was given."""
import importlib.abc
import importlib.util
import sys


class _CheatOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "fedscore.protocols.lookalike.media":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            honest = module.label_aggregate

            def label_aggregate(party, msg):
                from fedscore.wire import Message, ciphertext

                honest(party, msg)
                return Message(aggregate=ciphertext(msg["labels"]))

            module.label_aggregate = label_aggregate

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _CheatOnImport())
'''


@pytest.mark.integration
def test_a_cheating_media_is_refused_through_flower(tmp_path, monkeypatch):
    """The same refusal with the parties as Flower ClientApps in Ray workers (simulation runtime).

    The workers get the cheat as a ``sitecustomize`` module on their ``PYTHONPATH``, which
    Flower builds from this process's ``sys.path``.
    """
    folder = tmp_path / "cheat"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(CHEATING_MEDIA, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(FedscoreError, match="lookalike.release_aggregate: received"):
        run_lookalike(tmp_path, engine="simulation", exclude_seed=False)
