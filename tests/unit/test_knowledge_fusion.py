"""Hybrid ranking's parts: score fusion, the language penalty, identifiers, chunk headings."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.fusion import (
    CROSS_LINGUAL_FLOOR,
    cross_lingual_confidence,
    score_fusion,
    standout,
)
from knowledge.identifiers import identifiers, rare_identifier_found
from knowledge.language import script_of
from knowledge.search import Fusion, SearchQuery, rank
from knowledge.vectors import VectorHit
from loaders import parse, split
from loaders.splitter import heading


def _hit(chunk_id: str, score: float, text: str = "") -> VectorHit:
    return VectorHit(chunk_id=chunk_id, text=text or chunk_id, metadata={}, score=score)


def test_score_fusion_scales_each_leg_and_weighs_them() -> None:
    vector = [("a", 0.50), ("b", 0.45), ("c", 0.40)]
    keyword = [("c", 12.0), ("d", 6.0)]
    fused = dict(score_fusion(vector, keyword, keyword_weight=0.4))
    assert fused["a"] == pytest.approx(0.6)  # best similarity, no keyword match
    assert fused["b"] == pytest.approx(0.3)
    assert fused["c"] == pytest.approx(0.4)  # lowest similarity, best BM25
    assert fused["d"] == pytest.approx(0.2)  # keyword only: half the best BM25
    order = [item for item, _ in score_fusion(vector, keyword, keyword_weight=0.4)]
    assert order == ["a", "c", "b", "d"]
    # A leg's scale does not matter, only its spread: the same ranking with BM25 x 100.
    scaled = [(item, score * 100) for item, score in keyword]
    assert [i for i, _ in score_fusion(vector, scaled, keyword_weight=0.4)] == order


def test_score_fusion_edge_cases() -> None:
    assert score_fusion([], [], keyword_weight=0.3) == []
    assert score_fusion([("a", 0.3)], [], keyword_weight=0.3) == [("a", pytest.approx(0.7))]
    assert score_fusion([], [("k", 0.0)], keyword_weight=0.3) == []  # no real match
    tied = score_fusion([("x", 0.5), ("y", 0.5)], [], keyword_weight=0.0)
    assert [item for item, _ in tied] == ["x", "y"]  # ties keep the vector order


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("연차는 며칠인가요?", "ko"),
        ("VPN 접속은 SecureLink로 합니다", "ko"),  # English names inside Korean text
        ("How many days of leave?", "latin"),
        ("On-call policy (장애 대응 절차 instead)", "latin"),
        ("2025 / 12", ""),
    ],
)
def test_script_of(text: str, script: str) -> None:
    assert script_of(text) == script


def test_cross_lingual_confidence_compares_how_far_each_language_stands_out() -> None:
    flat = [0.60, 0.599, 0.598, 0.597, 0.596, 0.55]
    standing_out = [0.70, 0.60, 0.59, 0.58, 0.57]
    assert cross_lingual_confidence(flat, standing_out) == 1.0  # the answer is in the other
    # In the query's own language: the floor (half the penalty always applies).
    assert cross_lingual_confidence(standing_out, flat) == CROSS_LINGUAL_FLOOR == 0.5
    assert cross_lingual_confidence(flat, flat) == pytest.approx(0.5)  # no telling
    assert cross_lingual_confidence(flat, []) == 0.0  # one language: nothing to be fair to
    # BM25 found a name or code in the other language: evidence of its own.
    assert cross_lingual_confidence(standing_out, flat, other_keyword=0.7) == pytest.approx(0.7)
    assert cross_lingual_confidence([], flat, other_keyword=0.7) == pytest.approx(0.7)
    assert cross_lingual_confidence(flat, standing_out, other_keyword=0.2) == 1.0
    assert cross_lingual_confidence([], flat) == 0.0
    assert standout([0.9, 0.8]) == pytest.approx(0.1)  # fewer hits than the depth
    assert standout([]) == 0.0


KOREAN_CROWD = [_hit(f"ko-{i}", 0.60 - i / 1000, "휴가 규정 안내") for i in range(5)]
ENGLISH_CROWD = [_hit(f"en-{i}", 0.50 - i / 100, "holiday policy") for i in range(4)]
ANSWER = _hit("en-answer", 0.58, "Primary caregiver: 16 weeks of fully paid leave")
KOREAN_QUESTION = SearchQuery("주 양육자는 유급 육아휴직을 몇 주 쓸 수 있나요?", k=3)


def _ids(ranked: list[tuple[str, float]]) -> list[str]:
    return [item for item, _ in ranked]


def test_language_penalty_lifts_the_other_language_when_its_answer_stands_out() -> None:
    vector = sorted([*KOREAN_CROWD, ANSWER, *ENGLISH_CROWD], key=lambda hit: -hit.score)
    plain = rank(KOREAN_QUESTION, vector, [], Fusion(keyword_weight=0.2))
    assert _ids(plain)[0] == "ko-0"  # the embedder's bias: the Korean crowd first
    fair = rank(KOREAN_QUESTION, vector, [], Fusion(keyword_weight=0.2, language_penalty=0.1))
    assert _ids(fair)[0] == "en-answer"
    # Lifted from the vector leg's reserve, past the chunks a search without it would fuse.
    reserve = [_hit(f"ko-r{i}", 0.65 - i / 10000, "휴가 규정") for i in range(30)]
    lifted = rank(
        KOREAN_QUESTION,
        [*reserve, ANSWER, *ENGLISH_CROWD],
        [],
        Fusion(keyword_weight=0.2, language_penalty=0.1),
    )
    assert _ids(lifted)[0] == "en-answer"
    as_vector = SearchQuery(KOREAN_QUESTION.query, k=3, mode="vector")
    assert _ids(rank(as_vector, vector, [], Fusion(language_penalty=0.1)))[0] == "ko-0"


def test_language_penalty_spares_a_question_answered_in_its_own_language() -> None:
    # The Korean answer stands out of its crowd; the English chunks are a flat crowd that
    # the full penalty would lift above it, the floor's half does not.
    korean_answer = _hit("ko-answer", 0.66, "육아휴직은 최대 1년")
    english_flat = [_hit(f"en-{i}", 0.60 - i / 1000, "holiday policy") for i in range(5)]
    vector = sorted([korean_answer, *KOREAN_CROWD, *english_flat], key=lambda hit: -hit.score)
    fusion = Fusion(keyword_weight=0.2, language_penalty=0.1)
    assert _ids(rank(KOREAN_QUESTION, vector, [], fusion))[0] == "ko-answer"
    assert cross_lingual_confidence([0.66, 0.6, 0.599, 0.598, 0.597], [0.6, 0.599]) == 0.5
    # One language only: nothing changes.
    english = [_hit("a", 0.6, "leave policy"), _hit("b", 0.5, "holiday policy")]
    question = SearchQuery("How much leave?", k=2)
    assert rank(question, english, [], fusion) == rank(question, english, [], Fusion(0.2))


def test_keyword_leg_vouches_for_own_language_chunks_and_fades_when_cross_lingual() -> None:
    vector = sorted([*KOREAN_CROWD, ANSWER, *ENGLISH_CROWD], key=lambda hit: -hit.score)
    fusion = Fusion(keyword_weight=0.2, language_penalty=0.1)
    # BM25's best chunk keeps its similarity: the penalty is for the embedder's bias only.
    vouched = rank(KOREAN_QUESTION, vector, [("ko-3", 9.0)], fusion)
    assert _ids(vouched)[:2] == ["ko-3", "en-answer"]
    # Sure the answer is in English: BM25 (Korean matches only) weighs nothing, so a
    # keyword-only Korean chunk does not enter the top.
    keyword_only = rank(KOREAN_QUESTION, vector, [("ko-elsewhere", 9.0)], fusion)
    assert "ko-elsewhere" not in _ids(keyword_only)
    plain = rank(KOREAN_QUESTION, vector, [("ko-elsewhere", 9.0)], Fusion(keyword_weight=0.9))
    assert _ids(plain)[0] == "ko-elsewhere"


def test_a_code_bm25_finds_in_the_other_language_lifts_it() -> None:
    # "PO 번호가 없으면?": the Korean crowd has a chunk that stands out (a shared bigram), the
    # English procurement chunk is far down the vector leg, but BM25 finds "PO" in it.
    question = SearchQuery("PO 번호가 없으면 어떻게 돼?", k=3)
    korean = [_hit("ko-top", 0.66, "비밀번호 규칙"), *KOREAN_CROWD]
    english = [_hit(f"en-{i}", 0.55 - i / 1000, "travel policy") for i in range(5)]
    procurement = _hit("en-po", 0.54, "Every purchase needs a PO number")
    vector = sorted([*korean, *english, procurement], key=lambda hit: -hit.score)
    keyword = [("ko-top", 7.0), ("en-po", 4.8)]
    fusion = Fusion(keyword_weight=0.2, language_penalty=0.1)
    assert "en-po" in _ids(rank(question, vector, keyword, fusion))
    korean_only_keyword = [("ko-top", 7.0), ("ko-1", 4.8)]
    assert "en-po" not in _ids(rank(question, vector, korean_only_keyword, fusion))


@pytest.mark.parametrize(
    ("question", "found"),
    [
        ("What is Coupa used for?", {"coupa"}),
        ("Coupa에서는 뭘 해요?", {"coupa"}),
        ("Tell me about the HDHP.", {"hdhp"}),
        ("PO 번호가 없으면 어떻게 돼?", {"po"}),
        ("Where do SEV1 incidents go?", {"sev1"}),
        ("How do I book a meeting room for a team workshop?", set()),
        ("Who won the football world cup in 1998?", set()),
        ("What is the password of the guest wifi network?", set()),
        ("Is it possible? Jira says no.", set()),  # a sentence's first word
    ],
)
def test_identifiers(question: str, found: set[str]) -> None:
    assert identifiers(question) == found


def test_rare_identifier_found_needs_a_name_few_hits_hold() -> None:
    question = "What is Coupa used for?"
    assert rare_identifier_found(question, ["raise a PO in Coupa", "vendors in Coupa", "x"])
    assert rare_identifier_found(question, ["tools used daily", "raise a PO in Coupa"])
    assert not rare_identifier_found(question, ["tools used daily", "budget owner"])
    common = ["Coupa"] * 4
    assert not rare_identifier_found(question, common)  # in every hit: not specific
    assert not rare_identifier_found("How do I use it?", ["Coupa"])  # no identifier
    assert not rare_identifier_found(question, [])


MARKDOWN = (
    "# Travel Policy\n\nIntro line.\n\n## Hotels\n\n"
    + "Hotels are capped at $275 per night. " * 8
    + "\n\n## Flights\n\nEconomy class only.\n"
).encode()


def test_chunks_carry_the_title_and_section_when_asked() -> None:
    document = parse(MARKDOWN, "travel.md")
    plain = split(document, chunk_size=120, chunk_overlap=0)
    carried = split(document, chunk_size=120, chunk_overlap=0, headings=True)
    assert len(plain) == len(carried) > 3
    assert [c.section for c in plain] == [c.section for c in carried]
    hotels = [c.text for c in carried if c.section and c.section.endswith("Hotels")]
    assert len(hotels) > 1 and all(t.startswith("Travel Policy > Hotels\n") for t in hotels)
    assert carried[0].text == plain[0].text  # the title chunk already says it
    assert not any(c.text.startswith("Travel Policy > ") for c in plain)


def test_heading_does_not_repeat_the_title() -> None:
    assert heading("Travel Policy", "Travel Policy > Hotels") == "Travel Policy > Hotels"
    assert heading(None, "Hotels") == "Hotels"
    assert heading("On-call Policy", None) == "On-call Policy"
    assert heading(None, None) is None


def test_word_pattern_finds_a_word_exactly_where_the_tokenizer_does() -> None:
    """The identifier rule scans hit texts with word_pattern instead of tokenizing them."""
    import glob
    import re

    from knowledge.keywords import normalized, terms, word_pattern

    data = Path(__file__).resolve().parents[1] / "data" / "knowledge"
    files = sorted(glob.glob(str(data / "*.*")))
    texts = [open(f, encoding="utf-8").read() for f in files]
    chunks = [t[i : i + 800] for t in texts if t.strip() for i in range(0, len(t), 800)]
    chunks.append("VPN접속 user_id " + "x" * 70 + " café ＡＢＣ SEV1, M3.")
    words = {w for c in chunks for w in terms(c) if re.fullmatch(r"[a-z0-9]+", w)}
    words |= {"vpn", "user", "id", "abc", "caf", "sev1", "m3", "x" * 64}
    assert len(words) > 500
    for word in sorted(words):
        pattern = word_pattern(word)
        for chunk in chunks:
            assert (word in terms(chunk)) == bool(pattern.search(normalized(chunk))), (word, chunk)
