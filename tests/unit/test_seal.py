"""The seal chain links each seal to the one before it by digest; a rewrite anywhere shows."""

import hashlib
from datetime import UTC, datetime

from archiver.core import seal

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def chain_of(n: int, prefix: str = "p") -> dict[str, bytes]:
    stored: dict[str, bytes] = {}
    previous = None
    for number in range(1, n + 1):
        raw = seal.Seal.new(
            number, {f"{prefix}/2026/11/{number:02d}/manifest-sha256.txt": f"{number:064x}"}, previous, NOW
        ).to_bytes()
        key = seal.seal_key(prefix, number)
        stored[key] = raw
        previous = seal.Link(key, hashlib.sha256(raw).hexdigest())
    return stored


def test_a_chain_as_written_checks_and_names_its_head() -> None:
    stored = chain_of(3)
    chain = seal.check_chain("p", dict(stored))
    assert chain.problems == []
    assert chain.length == 3
    assert chain.head == seal.Link("p/seals/00000003.json", hashlib.sha256(stored["p/seals/00000003.json"]).hexdigest())
    assert chain.find(chain.head.sha256.upper()) == 3
    assert chain.sealed()["p/2026/11/02/manifest-sha256.txt"] == [(2, f"{2:064x}")]


def test_rewriting_a_seal_breaks_the_link_after_it() -> None:
    stored = chain_of(3)
    forged = seal.Seal.new(
        2,
        {"p/2026/11/02/manifest-sha256.txt": "f" * 64},
        seal.Seal.parse(stored["p/seals/00000002.json"]).previous,
        NOW,
    )
    stored["p/seals/00000002.json"] = forged.to_bytes()
    chain = seal.check_chain("p", dict(stored))
    assert [(k, "rewritten" in what) for k, what in chain.problems] == [("p/seals/00000003.json", True)]


def test_a_consistent_rewrite_changes_the_head_a_recorded_digest_no_longer_matches() -> None:
    original = seal.check_chain("p", dict(chain_of(3)))
    recorded = original.head.sha256 if original.head else ""
    rewritten = chain_of(3)  # the same chain rebuilt with another manifest digest in seal 1
    first = seal.Seal.new(1, {"p/2026/11/01/manifest-sha256.txt": "e" * 64}, None, NOW).to_bytes()
    rewritten["p/seals/00000001.json"] = first
    previous = seal.Link("p/seals/00000001.json", hashlib.sha256(first).hexdigest())
    for number in (2, 3):
        old = seal.Seal.parse(rewritten[seal.seal_key("p", number)])
        raw = seal.Seal(number, old.sealed_at, old.manifests, previous).to_bytes()
        rewritten[seal.seal_key("p", number)] = raw
        previous = seal.Link(seal.seal_key("p", number), hashlib.sha256(raw).hexdigest())
    chain = seal.check_chain("p", rewritten)
    assert chain.problems == []  # consistent in itself...
    assert chain.find(recorded) is None  # ...but the head recorded elsewhere is gone


def test_gaps_wrong_numbers_strays_and_unreadable_seals_are_named() -> None:
    stored: dict[str, bytes | None] = dict(chain_of(4))
    del stored["p/seals/00000002.json"]
    stored["p/seals/00000004.json"] = stored["p/seals/00000003.json"]  # says it is number 3
    stored["p/seals/notes.txt"] = b"hello"
    stored["p/seals/00000005.json"] = None
    stored["p/seals/00000006.json"] = b"{not json"
    problems = dict(seal.check_chain("p", stored).problems)
    assert "missing" in problems["p/seals/00000002.json"]
    assert "number 3" in problems["p/seals/00000004.json"]
    assert "not a seal" in problems["p/seals/notes.txt"]
    assert "cannot be read" in problems["p/seals/00000005.json"]
    assert "does not parse" in problems["p/seals/00000006.json"]


def test_the_first_seal_names_no_previous_one() -> None:
    raw = seal.Seal.new(1, {}, seal.Link("p/seals/00000000.json", "0" * 64), NOW).to_bytes()
    assert (
        "names a previous"
        in dict(seal.check_chain("p", {"p/seals/00000001.json": raw}).problems)["p/seals/00000001.json"]
    )


def test_keys_and_numbers() -> None:
    assert seal.seal_key("", 7) == "seals/00000007.json"
    assert seal.sequence_of("", "seals/00000007.json") == 7
    assert seal.sequence_of("p", "p/seals/123456789.json") == 123456789
    assert seal.sequence_of("p", "p/2026/11/01/seal.json") is None
