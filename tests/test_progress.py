"""The console shows where a long run is: a line per step off a terminal, one line redrawn on it."""

import io

from fedscore.runtime import progress
from fedscore.runtime.runner import run_job


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_per_step_with_the_loop_and_the_time_left():
    stream, clock = io.StringIO(), Clock()
    display = progress.ConsoleProgress("propensity", stream, live=False, clock=clock)
    display.step(["psi.blind_own", "psi.blind_own"])
    for epoch in range(1, 4):
        display.advance("epoch", epoch, 10)
        display.step(["propensity.brand_round"])
        clock.now += 30  # each epoch takes 30 s
        display.step(["propensity.media_round"])
    display.step(["propensity.rank_encrypt"])
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[0 s] propensity: psi.blind_own"
    assert lines[1] == "[0 s] propensity: propensity.brand_round · epoch 1 of 10"
    # epoch 3 begins after two epochs of 30 s: at most 8 more, 4 minutes
    assert lines[5] == "[1 min 00 s] propensity: propensity.brand_round · epoch 3 of 10, at most 4 min 00 s left"
    assert lines[-1] == "[1 min 30 s] propensity: propensity.rank_encrypt"  # the loop is over


def test_on_a_terminal_one_line_is_redrawn_and_cleared_at_the_end():
    stream = io.StringIO()
    display = progress.ConsoleProgress("segment", stream, live=True, clock=Clock())
    display.step(["segment.encrypt_distances"])
    display.step(["psi.match"])
    display.close()
    text = stream.getvalue()
    assert "\n" not in text
    assert text.count("\r") == 4 and text.endswith("\r")
    assert "[0 s] segment: psi.match" in text


def test_a_local_run_shows_each_step_only_when_asked(tmp_path):
    run_job("ping", {}, {"brand": {}, "media": {}}, tmp_path / "quiet")
    stream = io.StringIO()
    with progress.on_console(stream=stream, live=False):
        run_job("ping", {}, {"brand": {}, "media": {}}, tmp_path / "shown")
    lines = stream.getvalue().splitlines()
    assert lines and all(line.split("] ", 1)[1].startswith("ping: ping.") for line in lines)
    assert progress.for_run("ping") is None  # the block ended: the library is quiet again


def test_a_partys_own_loop_and_figure_join_the_line_and_the_estimate():
    stream, clock = io.StringIO(), Clock()
    display = progress.ConsoleProgress("psi", stream, live=False, clock=clock)
    display.step(["psi.blind_own", "psi.blind_own"])
    for block in range(1, 4):
        display.party_pass("brand", "hashing block", block, 8)
        clock.now += 5
    display.advance("epoch", 1, 10)
    display.step(["propensity.brand_update"])
    display.party_figure("brand", "validation Brier 0.0800")
    display.step(["propensity.media_round"])
    lines = stream.getvalue().splitlines()
    assert lines[1] == "[0 s] psi: psi.blind_own · brand: hashing block 1 of 8"
    assert lines[3] == "[10 s] psi: psi.blind_own · brand: hashing block 3 of 8, 30 s left"  # blocks 3 to 8, 5 s each
    assert lines[4] == "[15 s] psi: propensity.brand_update · epoch 1 of 10"  # a new step ends the party's loop
    assert lines[5].endswith("epoch 1 of 10 · brand: validation Brier 0.0800")
    assert lines[6].endswith("propensity.media_round · epoch 1 of 10 · brand: validation Brier 0.0800")
    display.advance("epoch", 1, 3)  # a new loop: the old figure is no longer about it
    display.step(["segment.assign"])
    assert "Brier" not in stream.getvalue().splitlines()[-1]


def test_a_local_run_shows_psi_blocks_and_the_brands_validation_score(tmp_path):
    from test_propensity import tables
    import fedscore

    brand, media = tables()
    stream = io.StringIO()
    with progress.on_console(stream=stream, live=False):
        fedscore.propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", epochs=2,
                            random_state=0, paillier_key_bits=1024, label_dp_epsilon=None)
    text = stream.getvalue()
    assert "brand: hashing block 1 of 1" in text and "media: blinding the peer's block 1 of 1" in text
    figures = [line for line in text.splitlines() if "brand: validation Brier" in line]
    assert figures and all("epoch" in line for line in figures)
    assert "(best: epoch 1)" in figures[0]
