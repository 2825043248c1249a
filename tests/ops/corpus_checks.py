"""What a corpus case of a judging op must give, shared by the corpus test modules."""

from __future__ import annotations

from archon_search.ops.critic import parse_critiques
from archon_search.ops.ranker import parse_ranking


def check_ranking(case: dict) -> None:
    """The ranking read from `case["text"]` is `case["ranking"]` (1-based; None: no ranking), a guess as flagged."""
    parsed = parse_ranking(case["text"], case["n"])
    if case["ranking"] is None:
        assert parsed is None, parsed
        return
    assert parsed is not None and [k + 1 for k in parsed.value] == case["ranking"], parsed
    assert (parsed.guess is not None) == case["guess"], parsed.guess


def check_critiques(case: dict) -> None:
    """Each candidate's critique has the phrases of `has`, lacks those of `lacks`; `missing` get none; a guess only
    where `guess` says so."""
    parsed = parse_critiques(case["text"], case["n"])
    critiques = parsed.value if parsed else {}
    for k, phrases in case.get("has", {}).items():
        for phrase in phrases:
            assert phrase in critiques.get(k - 1, ""), (k, phrase, critiques)
    for k, phrases in case.get("lacks", {}).items():
        for phrase in phrases:
            assert phrase not in critiques.get(k - 1, ""), (k, phrase, critiques)
    assert sorted(k + 1 for k in range(case["n"]) if k not in critiques) == sorted(case.get("missing", []))
    assert (parsed is not None and parsed.guess is not None) == case.get("guess", False), parsed
