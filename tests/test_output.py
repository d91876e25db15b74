import pytest

from fedscore.errors import InputError
from fedscore.output import staged_output


def test_success_moves_the_folder_into_place(tmp_path):
    out = tmp_path / "run"
    with staged_output(out) as staging:
        (staging / "a.txt").write_text("x")
    assert (out / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_failure_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with staged_output(out) as staging:
            (staging / "partial.csv").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(InputError, match="already exists"):
        with staged_output(out):
            pass
    with staged_output(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
