import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedscore.errors import InputError
from fedscore.ids import normalise, prepare_ids


@pytest.mark.parametrize("raw, expected, kind", [
    ("  Ana.Lopez@Mail.COM ", "ana.lopez@mail.com", "email"),
    ("+44 (20) 7946-0958", "442079460958", "phone"),
    ("020 7946 0958", "02079460958", "phone"),
    ("555.010.9999", "5550109999", "phone"),
    ("0123456", "0123456", "phone"),
    ("5F4DCC3B5AA765D61D8327DEB882CF99", "5f4dcc3b5aa765d61d8327deb882cf99", "hashed"),
    ("A94A8FE5CCB19BA61C4C0873D391E987982FBBD3", "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "hashed"),
    ("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "hashed"),
    (" CUST-0042 ", "CUST-0042", "text"),
    ("12345", "12345", "text"),  # too short for a phone number: left as it is
    ("+1 555 0100 9999 12345", "+1 555 0100 9999 12345", "text"),  # 16 digits: longer than E.164 allows
    ("abcdef", "abcdef", "text"),
])
def test_auto_normalises_each_value_by_its_shape(raw, expected, kind):
    ids, kinds = normalise([raw])
    assert ids[0] == expected
    assert kinds[0] == kind


def test_auto_handles_a_mixed_column_and_empty_values():
    ids, kinds = normalise(["Bob@X.org", "", "   ", "+1-555-010-9999", "id-7"])
    assert list(ids) == ["bob@x.org", "", "", "15550109999", "id-7"]
    assert list(kinds) == ["email", "", "", "phone", "text"]


def test_the_same_person_spelt_two_ways_normalises_to_one_id():
    brand, _ = normalise(["Ana@Mail.com", "+33 6 12 34 56 78"])
    media, _ = normalise([" ana@mail.COM", "33612345678"])
    assert list(brand) == list(media)


def test_explicit_kind_applies_one_rule_to_every_value():
    ids, kinds = normalise(["CUST-12", "Ana@Mail.com"], "text")
    assert list(ids) == ["CUST-12", "Ana@Mail.com"]
    ids, _ = normalise(["tel 555 010 9999"], "phone")
    assert list(ids) == ["5550109999"]


@pytest.mark.parametrize("kind, values, match", [
    ("email", ["a@b.c", "not-an-email"], "row 3: ID 'not-an-email' is not an e-mail address"),
    ("phone", ["5550109999", "12"], r"row 3: ID '12' is not a phone number \(7 to 15 digits\)"),
    ("hashed", ["abc"], "row 2: ID 'abc' is not a hex MD5, SHA-1 or SHA-256 hash"),
])
def test_explicit_kind_refuses_values_that_do_not_fit(kind, values, match):
    with pytest.raises(InputError, match=match):
        normalise(values, kind, path="ids.csv", column="id")


def test_unknown_kind_is_refused():
    with pytest.raises(InputError, match="unknown ID kind 'fax'"):
        normalise(["x"], "fax")


def test_prepare_ids_reports_and_drops_empty_and_duplicated_ids():
    prepared = prepare_ids(["a@x.com", "", "A@X.com ", "b@x.com", "  ", "a@x.com", "c"])
    assert list(prepared.ids) == ["a@x.com", "b@x.com", "c"]
    assert list(prepared.rows) == [0, 3, 6]
    report = prepared.report
    assert (report.rows, report.empty, report.duplicates, report.unique) == (7, 2, 2, 3)
    assert report.kinds == {"email": 4, "text": 1}
    assert report.to_dict()["unique"] == 3


def test_prepare_ids_refuses_a_column_without_any_id():
    with pytest.raises(InputError, match="column 'id': no row has a non-empty ID"):
        prepare_ids(["", " "], path="t.csv", column="id")


_phones = st.lists(st.sampled_from("0123456789 -.()"), min_size=1, max_size=20).map(lambda c: "+" + "".join(c))
_hashes = st.binary(min_size=32, max_size=32).map(lambda b: b.hex().upper())
_ids = st.one_of(st.emails(), _phones, _hashes, st.text(max_size=20))


@settings(max_examples=150, deadline=None)
@given(st.lists(_ids, max_size=20), st.sampled_from(["auto", "text"]))
def test_normalisation_is_idempotent(values, kind):
    once, kinds = normalise(values, kind)
    twice, kinds_again = normalise(once, kind)
    assert list(once) == list(twice)
    assert list(kinds) == list(kinds_again)


@settings(max_examples=100, deadline=None)
@given(st.emails(), st.sampled_from([str.upper, str.lower, str.title]), st.text(" \t", max_size=3))
def test_email_spelling_and_padding_do_not_matter(email, case, pad):
    assert normalise([pad + case(email) + pad])[0][0] == normalise([email])[0][0]

