"""Hybrid ranking's parts: score fusion, the language penalty, identifiers, chunk headings."""

from __future__ import annotations

import pytest

from knowledge.fusion import score_fusion
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


def test_language_penalty_lifts_the_other_language_in_hybrid_only() -> None:
    korean_question = SearchQuery("주 양육자는 유급 육아휴직을 몇 주 쓸 수 있나요?", k=2)
    vector = [
        _hit("ko-near", 0.52, "육아휴직 신청은 하모니에서 합니다"),
        _hit("en-answer", 0.50, "Primary caregiver: 16 weeks of fully paid leave"),
        _hit("ko-far", 0.30, "휴일 근무 수당"),
    ]
    plain = rank(korean_question, vector, [], Fusion(keyword_weight=0.3))
    assert plain[0][0] == "ko-near"
    fair = rank(korean_question, vector, [], Fusion(keyword_weight=0.3, language_penalty=0.05))
    assert fair[0][0] == "en-answer"
    # Lifted from the vector leg's reserve, past the k chunks a search without it would fuse.
    reserve = [_hit(f"ko-{i}", 0.60 - i / 100, "휴가 규정") for i in range(20)] + vector[1:2]
    lifted = rank(korean_question, reserve, [], Fusion(keyword_weight=0.3, language_penalty=0.2))
    assert lifted[0][0] == "en-answer"
    as_vector = SearchQuery(korean_question.query, k=2, mode="vector")
    assert rank(as_vector, vector, [], Fusion(language_penalty=0.05))[0][0] == "ko-near"
    # One language only: the penalty shifts every chunk alike and reorders nothing.
    english = [_hit("a", 0.6, "leave policy"), _hit("b", 0.5, "holiday policy")]
    question = SearchQuery("How much leave?", k=2)
    assert rank(question, english, [], Fusion(language_penalty=0.05)) == rank(
        question, english, [], Fusion()
    )


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
