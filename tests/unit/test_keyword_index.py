"""The keyword tokenizer and the BM25 index in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import random
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.driver_sql import DriverReads
from db.models import (
    KeywordChunk,
    KeywordPosting,
    KeywordTerm,
    KnowledgeChunk,
    KnowledgeDocument,
)
from knowledge import keyword_index
from knowledge.keyword_index import reads as keyword_reads
from knowledge.keyword_index import warming as keyword_warming
from knowledge.keywords import MAX_TERM_LENGTH, terms
from tests.support.registry_rows import collection_row, document_row

# --- tokenizer ------------------------------------------------------------------------------


def test_hangul_runs_become_bigrams() -> None:
    assert terms("접속방법") == Counter({"접속": 1, "속방": 1, "방법": 1})
    assert terms("팀") == Counter({"팀": 1})  # a one-syllable run is kept whole
    assert terms("서버에서 서버") == Counter({"서버": 2, "버에": 1, "에서": 1})
    # Jamo are Hangul too (NFKC turns compatibility jamo into conjoining ones).
    assert terms("ㅋㅋㅋ") == Counter({unicodedata.normalize("NFKC", "ㅋㅋ"): 2})


def test_mixed_tokens_split_into_word_and_bigrams() -> None:
    assert terms("VPN접속") == Counter({"vpn": 1, "접속": 1})
    assert terms("IT팀 2024년") == Counter({"it": 1, "팀": 1, "2024": 1, "년": 1})
    assert terms("Wi-Fi 비밀번호") == Counter({"wi": 1, "fi": 1, "비밀": 1, "밀번": 1, "번호": 1})


def test_english_words_lowercased_normalized_stopwords_dropped() -> None:
    assert terms("The Quick and the DEAD of it") == Counter({"quick": 1, "dead": 1, "it": 1})
    assert terms("ＶＰＮ　Ｓｅｔｕｐ") == Counter({"vpn": 1, "setup": 1})  # NFKC: full-width
    assert terms("user_id = 42!") == Counter({"user": 1, "id": 1, "42": 1})
    assert terms("the a an") == Counter()
    assert terms("") == Counter()
    long = "x" * 100
    assert terms(long) == Counter({"x" * MAX_TERM_LENGTH: 1})


# --- the index ------------------------------------------------------------------------------


class Corpus:
    """A collection with one document, filled the way ingestion does it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.collection_id = str(uuid.uuid4())  # PostgreSQL's database is shared by tests
        self.document_id = str(uuid.uuid4())
        self.ids: dict[str, str] = {}

    async def create(self) -> Corpus:
        async with self.sessions() as session:
            session.add(collection_row(self.collection_id))
            await session.flush()
            session.add(document_row(self.collection_id, self.document_id))
            await session.commit()
        return self

    async def add(self, **texts: str) -> dict[str, int]:
        """Index ``name=text`` chunks and store their rows, in one transaction."""
        ids = {name: f"{self.document_id}:{name}" for name in texts}
        self.ids.update(ids)
        async with self.sessions() as session:
            counts = await keyword_index.index_chunks(
                session, self.collection_id, [(ids[n], t) for n, t in texts.items()]
            )
            session.add_all(
                KnowledgeChunk(
                    id=ids[name],
                    document_id=self.document_id,
                    collection_id=self.collection_id,
                    chunk_index=index,
                    text=text,
                    token_count=counts[ids[name]],
                )
                for index, (name, text) in enumerate(texts.items())
            )
            await session.commit()
        return {name: counts[ids[name]] for name in texts}

    async def remove(self, *names: str) -> None:
        """Delete chunks as the registry does: postings and rows together."""
        ids = [self.ids.get(n, n) for n in names]
        async with self.sessions() as session:
            await keyword_index.remove_chunks(session, ids)
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.id.in_(ids)))
            await session.commit()

    async def search(
        self, query: str, *, limit: int = 10, allowed: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """Hits as (chunk name, score)."""
        names = {chunk_id: name for name, chunk_id in self.ids.items()}
        within = None if allowed is None else {self.ids.get(a, a) for a in allowed}
        async with self.sessions() as session:
            reads = await DriverReads.on(await session.connection())
            found = await keyword_index.search(
                reads, self.collection_id, query, limit=limit, allowed=within
            )
        return [(names[chunk_id], score) for chunk_id, score in found.hits]

    async def top(
        self, query: str, *, limit: int = 10, allowed: Sequence[str] | None = None
    ) -> list[str]:
        return [name for name, _ in await self.search(query, limit=limit, allowed=allowed)]


async def corpus(sessions: async_sessionmaker[AsyncSession], **texts: str) -> Corpus:
    made = await Corpus(sessions).create()
    if texts:
        await made.add(**texts)
    return made


def bm25(tf: int, dl: int, avgdl: float, n: int, df: int) -> float:
    """One term's contribution, written out as in the textbook (k1 = 1.2, b = 0.75)."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))


async def test_bm25_scores_match_the_hand_computed_example(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    docs = await corpus(
        sessions,
        d1="apple banana apple",  # dl 3
        d2="banana cherry",  # dl 2
        d3="cherry cherry cherry date",  # dl 4; N = 3, avgdl = 9 / 3 = 3
    )
    hits = await docs.search("apple cherry")
    # apple: df 1, idf ln(1 + 2.5/1.5); cherry: df 2, idf ln(1 + 1.5/2.5)
    expected = [
        ("d1", math.log(1 + 2.5 / 1.5) * (2 * 2.2) / (2 + 1.2 * (0.25 + 0.75 * 3 / 3))),
        ("d3", math.log(1 + 1.5 / 2.5) * (3 * 2.2) / (3 + 1.2 * (0.25 + 0.75 * 4 / 3))),
        ("d2", math.log(1 + 1.5 / 2.5) * (1 * 2.2) / (1 + 1.2 * (0.25 + 0.75 * 2 / 3))),
    ]
    assert [name for name, _ in hits] == [name for name, _ in expected]
    for (_, score), (_, want) in zip(hits, expected, strict=True):
        assert score == pytest.approx(want, abs=1e-6)
    assert hits[0][1] == pytest.approx(1.348641, abs=1e-6)  # the number, not just the formula
    # A query term in no chunk adds nothing; repeating a query term counts it once.
    assert await docs.search("apple cherry kiwi") == hits
    assert await docs.search("cherry apple apple") == hits


async def test_token_counts_are_the_document_lengths(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    docs = await corpus(sessions)
    counts = await docs.add(a="The VPN접속 guide", b="", c="!!! ...")
    assert counts == {"a": 3, "b": 0, "c": 0}  # vpn, 접속, guide ("the" is dropped)
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count())
            .select_from(KeywordPosting)
            .where(KeywordPosting.collection_id == docs.collection_id)
        )
        forward = dict(
            (
                await session.execute(
                    select(KeywordChunk.chunk_id, KeywordChunk.length).where(
                        KeywordChunk.collection_id == docs.collection_id
                    )
                )
            ).all()
        )
    assert stored == 3  # a's three terms: postings are stored once, no length postings
    assert forward == {docs.ids["a"]: 3, docs.ids["b"]: 0, docs.ids["c"]: 0}


async def test_ranking_picks_the_right_korean_and_english_chunks(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    docs = await corpus(
        sessions,
        vpn="재택근무 시 VPN접속 방법: 사내 포털에서 VPN 클라이언트를 설치하고 OTP로 로그인합니다.",
        leave="연차 휴가 신청은 인사 시스템에서 하며, 팀장의 승인을 받아야 합니다.",
        wifi="사무실 Wi-Fi 비밀번호는 매달 바뀝니다. 안내 메일을 확인하세요.",
        expense="Submit your expense report within 30 days; reimbursement is paid monthly.",
        security="Report a security incident to the security team at once.",
        printer="The printer on the third floor needs a badge to release jobs.",
    )
    assert (await docs.top("VPN 접속 방법"))[0] == "vpn"
    assert (await docs.top("휴가 신청은 어떻게 하나요"))[0] == "leave"
    assert (await docs.top("와이파이 비밀번호"))[0] == "wifi"
    assert (await docs.top("how do I get my expenses reimbursed? expense report"))[0] == "expense"
    assert (await docs.top("security incident"))[0] == "security"
    assert (await docs.top("badge printer"))[0] == "printer"
    assert await docs.top("the of and") == []  # only stopwords: no terms, no hits
    assert await docs.top("") == []
    assert await docs.top("kubernetes") == []  # no chunk has it


async def test_removed_chunks_never_come_back_and_statistics_follow(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    docs = await corpus(sessions, a="alpha beta", b="alpha gamma delta", c="beta")
    assert await docs.top("alpha") == ["a", "b"]
    await docs.remove("a")
    hits = await docs.search("alpha beta")
    assert [name for name, _ in hits] == ["c", "b"]  # a is gone
    # N = 2 and avgdl = (3 + 1) / 2: "alpha" now has df 1, "beta" df 1.
    assert hits[0][1] == pytest.approx(bm25(tf=1, dl=1, avgdl=2, n=2, df=1), abs=1e-6)
    assert hits[1][1] == pytest.approx(bm25(tf=1, dl=3, avgdl=2, n=2, df=1), abs=1e-6)
    await docs.remove("b", "c", "b")  # duplicates and repeats are harmless
    await docs.remove("a")
    assert await docs.top("alpha beta gamma") == []
    await docs.add(a2="alpha")  # the index keeps working after it emptied
    assert await docs.search("alpha") == [("a2", pytest.approx(bm25(1, 1, 1.0, 1, 1)))]


async def test_removal_in_large_batches(sessions: async_sessionmaker[AsyncSession]) -> None:
    docs = await corpus(sessions)
    await docs.add(**{f"c{i}": f"common word{i}" for i in range(1200)})
    assert len(await docs.search("common", limit=2000)) == 1200
    await docs.remove(*(f"c{i}" for i in range(1100)))
    assert sorted(await docs.top("common", limit=2000)) == sorted(
        f"c{i}" for i in range(1100, 1200)
    )


@pytest.fixture(params=["from-sql", "from-memory"])
def cached(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Both ways a term's postings are read: from SQL each time, or kept in memory."""
    keyword_index.CACHE.clear()
    memory = request.param == "from-memory"
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 0 if memory else 10**9)
    yield memory
    keyword_index.CACHE.clear()


async def test_allowed_restricts_the_results_not_the_scores(
    sessions: async_sessionmaker[AsyncSession], cached: bool
) -> None:
    docs = await corpus(sessions, a="vpn vpn guide", b="vpn setup", c="vpn", d="printer guide")
    everything = await docs.search("vpn guide")
    assert [name for name, _ in everything] == ["a", "d", "c", "b"]

    def only(*names: str) -> list[tuple[str, object]]:
        return [(name, pytest.approx(score)) for name, score in everything if name in names]

    assert await docs.search("vpn guide", allowed=["b", "d"]) == only("b", "d")
    assert await docs.search("vpn guide", allowed=["b", "d"], limit=1) == only("d")
    many = ["b", "c", *(f"missing-{i}" for i in range(1200))]
    assert await docs.search("vpn guide", allowed=many) == only("c", "b")
    assert await docs.search("vpn guide", allowed=many, limit=1) == only("c")
    assert await docs.search("vpn guide", allowed=[]) == []
    assert await docs.search("vpn guide", allowed=["missing"]) == []


async def test_allowed_picks_the_global_top_among_many(
    sessions: async_sessionmaker[AsyncSession], cached: bool
) -> None:
    docs = await corpus(sessions)
    # 1,100 chunks, the longer the weaker: the best allowed ones are spread out.
    await docs.add(**{f"c{i:04d}": "target " + "filler " * (i % 7) for i in range(1100)})
    allowed = [f"c{i:04d}" for i in range(0, 1100, 2)]
    hits = await docs.search("target filler", allowed=allowed, limit=5)
    everything = await docs.search("target filler", limit=2000)
    assert len(everything) == 1100
    assert hits == [hit for hit in everything if hit[0] in set(allowed)][:5]


async def test_collections_are_isolated(sessions: async_sessionmaker[AsyncSession]) -> None:
    first = await corpus(sessions, a="shared words here", b="other text")
    second = await corpus(sessions, x="shared words here")
    for i in range(5):
        await second.add(**{f"y{i}": "shared"})
    assert await first.top("shared") == ["a"]
    assert sorted(await second.top("shared")) == ["x", "y0", "y1", "y2", "y3", "y4"]
    # The first collection's statistics ignore the second's chunks: N = 2, df = 1.
    ((_, score),) = await first.search("shared")
    assert score == pytest.approx(bm25(tf=1, dl=3, avgdl=2.5, n=2, df=1), abs=1e-6)
    async with sessions() as session:
        await keyword_index.remove_collection(session, second.collection_id)
        await session.commit()
    assert await second.top("shared") == []
    assert await first.top("shared") == ["a"]


async def test_limit(sessions: async_sessionmaker[AsyncSession]) -> None:
    docs = await corpus(
        sessions,
        a="jira jira jira",
        b="jira jira",
        c="jira",
        d="jira ticket",
        e="confluence",
    )
    assert await docs.top("jira", limit=2) == ["a", "b"]
    assert await docs.top("jira", limit=10) == ["a", "b", "c", "d"]
    assert await docs.top("jira", limit=0) == []


def zipf_corpus(count: int, seed: int = 7) -> dict[str, str]:
    """Chunks of Zipf-distributed words: a few in almost every chunk, most rare."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(80)] + [f"단어{chr(0xAC00 + i)}" for i in range(40)]
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    return {
        f"c{i:03d}": " ".join(rng.choices(vocab, weights, k=rng.randint(5, 40)))
        for i in range(count)
    }


QUERIES = ["w0 w1 w50", "w0 w70", "w0 w1 w2", "w3 w60 w61 단어가", "단어나 w0", "w79 w78"]


async def test_memory_answers_as_sql_does(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = await corpus(sessions, **zipf_corpus(300))
    keyword_index.CACHE.clear()
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 10**9)
    from_sql = {(q, k): await docs.search(q, limit=k) for q in QUERIES for k in (1, 5, 400)}
    assert not keyword_index.CACHE._lru  # nothing was kept
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 0)
    for _ in range(2):  # filling the cache, then answering from it
        for (q, k), expected in from_sql.items():
            hits = await docs.search(q, limit=k)
            assert [n for n, _ in hits] == [n for n, _ in expected], q
            assert [s for _, s in hits] == pytest.approx([s for _, s in expected])
    assert keyword_index.CACHE._lru
    keyword_index.CACHE.clear()


async def test_every_write_is_seen_by_the_next_search(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    keyword_index.CACHE.clear()
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 0)  # everything from memory
    docs = await corpus(sessions, a="alpha beta", b="alpha")
    assert await docs.top("alpha") == ["b", "a"]
    await docs.add(c="alpha alpha")
    assert await docs.top("alpha") == ["c", "b", "a"]
    await docs.remove("b")
    assert await docs.top("alpha") == ["c", "a"]
    ((_, score),) = await docs.search("beta")
    assert score == pytest.approx(bm25(tf=1, dl=2, avgdl=2, n=2, df=1), abs=1e-6)
    # A second index over the same database (another process) sees the same.
    other = keyword_index.PostingCache()
    monkeypatch.setattr(keyword_reads, "CACHE", other)
    assert await docs.top("alpha") == ["c", "a"]


async def test_the_memory_budget_evicts_the_least_recently_used(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    small = keyword_index.PostingCache(budget=5)
    monkeypatch.setattr(keyword_reads, "CACHE", small)
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 0)
    docs = await corpus(sessions, a="red blue", b="red blue", c="red green", d="blue")
    assert sorted(await docs.top("red")) == ["a", "b", "c"]
    assert sorted(await docs.top("blue")) == ["a", "b", "d"]  # 3 + 3 > 5: red goes
    assert set(small._lru) == {(docs.collection_id, "blue")}
    assert sorted(await docs.top("green red")) == ["a", "b", "c"]
    assert small._size <= 5


async def counters(sessions: async_sessionmaker[AsyncSession], collection_id: str) -> dict:
    async with sessions() as session:
        rows = await session.execute(
            select(KeywordTerm.term, KeywordTerm.df).where(
                KeywordTerm.collection_id == collection_id
            )
        )
        return {term: df for term, df in rows if term not in keyword_index.MONOTONIC}


async def assert_counters_exact(sessions: async_sessionmaker[AsyncSession], docs: Corpus) -> None:
    """The maintained counters equal a recount from the postings and the chunk rows."""
    kept = await counters(sessions, docs.collection_id)
    async with sessions() as session:
        await keyword_index.rebuild_statistics(session, docs.collection_id)
        await session.commit()
        chunks = await session.scalar(
            select(func.count())
            .select_from(KnowledgeChunk)
            .where(KnowledgeChunk.collection_id == docs.collection_id)
        )
        tokens = await session.scalar(
            select(func.coalesce(func.sum(KnowledgeChunk.token_count), 0)).where(
                KnowledgeChunk.collection_id == docs.collection_id
            )
        )
    recounted = await counters(sessions, docs.collection_id)
    assert kept == recounted
    assert kept.get(keyword_index.CHUNKS_TERM, 0) == chunks
    assert kept.get(keyword_index.TOKENS_TERM, 0) == tokens


async def test_counters_follow_ingest_and_removal(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    docs = await corpus(sessions, a="alpha beta beta", b="alpha 감마", c="", d="beta")
    assert await counters(sessions, docs.collection_id) == {
        "#chunks": 4,
        "#tokens": 3 + 2 + 0 + 1,
        "alpha": 2,
        "beta": 2,
        "감마": 1,
    }
    await docs.remove("a", "c", "missing")
    await docs.remove("a")  # again: subtracts nothing
    assert await counters(sessions, docs.collection_id) == {
        "#chunks": 2,
        "#tokens": 3,
        "alpha": 1,
        "beta": 1,
        "감마": 1,
    }  # terms down to df 0 are deleted
    await docs.remove("b", "d")
    assert await counters(sessions, docs.collection_id) == {}
    await assert_counters_exact(sessions, docs)


async def test_concurrent_ingest_and_delete_keep_counters_exact(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    docs = await corpus(sessions)
    texts = zipf_corpus(160, seed=3)
    names = sorted(texts)
    await docs.add(**{name: texts[name] for name in names[:40]})

    async def writer(part: int) -> None:
        mine = names[40 + part * 15 : 40 + (part + 1) * 15]
        await docs.add(**{name: texts[name] for name in mine})
        await docs.remove(*names[part * 5 : (part + 1) * 5], *names[:3])  # overlapping deletes

    await asyncio.gather(*(writer(part) for part in range(8)))
    assert await counters(sessions, docs.collection_id) != {}
    await assert_counters_exact(sessions, docs)
    hits = await docs.search(" ".join(f"w{i}" for i in range(80)), limit=500)
    assert {name for name, _ in hits} == set(names[40:])  # all of the first 40 were removed


async def test_kept_postings_follow_writes_through_the_log(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random adds, removals and re-adds: memory patched by the log answers as SQL does."""
    kept = keyword_index.PostingCache()
    monkeypatch.setattr(keyword_reads, "CACHE", kept)
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 0)
    rng = random.Random(5)
    texts = zipf_corpus(120, seed=9)
    names = sorted(texts)
    docs = await corpus(sessions, **{n: texts[n] for n in names[:60]})
    live = set(names[:60])
    queries = ["w0 w1", "w2 w40 단어가", "w5", "w0 w1 w2 w3"]
    for q in queries:
        await docs.search(q, limit=8)
    entry = kept.collection(docs.collection_id)
    assert entry is not None
    for step in range(12):
        if step % 3 == 2 and live:  # remove a few, and re-add one of them under its id
            gone = rng.sample(sorted(live), 3)
            await docs.remove(*gone)
            live -= set(gone)
            await docs.add(**{gone[0]: texts[gone[0]] + " w0"})
            live.add(gone[0])
        else:
            new = rng.sample([n for n in names if n not in live], 4)
            await docs.add(**{n: texts[n] for n in new})
            live |= set(new)
        for q in queries:
            patched = await docs.search(q, limit=8)
            monkeypatch.setattr(keyword_reads, "CACHE", keyword_index.PostingCache())
            monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 10**9)
            from_sql = await docs.search(q, limit=8)
            monkeypatch.setattr(keyword_reads, "CACHE", kept)
            monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 0)
            assert [n for n, _ in patched] == [n for n, _ in from_sql], (step, q)
            assert [s for _, s in patched] == pytest.approx([s for _, s in from_sql])
            assert {n for n, _ in patched} <= live
    assert kept.collection(docs.collection_id) is entry  # patched all along, never restarted
    assert entry.dead  # removed chunks were masked, not re-read


async def test_warming_reads_the_most_frequent_terms_within_the_budget(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = keyword_index.PostingCache()
    monkeypatch.setattr(keyword_reads, "CACHE", kept)
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 20)
    docs = await corpus(sessions, **zipf_corpus(300))
    df = {t: n for t, n in (await counters(sessions, docs.collection_id)).items() if t[0] != "#"}
    common = sorted((n for n in df.values() if n >= 20), reverse=True)
    budget = sum(common[:4]) + 1
    read = await keyword_index.warm(sessions, docs.collection_id, budget=budget)
    entry = kept.collection(docs.collection_id)
    assert entry is not None
    warmed = set(entry.terms)
    assert len(warmed) >= 4
    assert read == sum(df[t] for t in warmed) <= budget
    assert min(df[t] for t in warmed) >= max(df[t] for t in df if t not in warmed)
    # What the warmed memory answers is what SQL answers.
    for q in QUERIES:
        from_memory = await docs.search(q, limit=5)
        monkeypatch.setattr(keyword_reads, "CACHE", keyword_index.PostingCache())
        from_sql = await docs.search(q, limit=5)
        monkeypatch.setattr(keyword_reads, "CACHE", kept)
        assert [n for n, _ in from_memory] == [n for n, _ in from_sql], q
        assert [s for _, s in from_memory] == pytest.approx([s for _, s in from_sql])


async def test_a_collections_first_search_schedules_one_warming(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = keyword_index.PostingCache()
    monkeypatch.setattr(keyword_reads, "CACHE", kept)
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 20)
    monkeypatch.setattr(keyword_warming, "_warming", {})
    monkeypatch.setitem(keyword_warming._settings, "warm_postings", 0)
    docs = await corpus(sessions, **zipf_corpus(300))
    keyword_index.warm_soon(sessions, docs.collection_id)
    assert not keyword_warming._warming  # warming off (0)
    keyword_index.configure(cache_postings=10**6, warm_postings=10**6)
    await docs.search("w0")
    keyword_index.warm_soon(sessions, docs.collection_id)
    keyword_index.warm_soon(sessions, docs.collection_id)  # once per cache entry
    ((task, _),) = keyword_warming._warming.values()
    await task
    entry = kept.collection(docs.collection_id)
    assert entry is not None and len(entry.terms) > 1  # more than the searched term
    keyword_index.warm_soon(sessions, docs.collection_id)
    assert keyword_warming._warming[docs.collection_id][0] is task  # not again


async def test_start_up_warms_the_largest_collections_first(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = keyword_index.PostingCache()
    monkeypatch.setattr(keyword_reads, "CACHE", kept)
    monkeypatch.setattr(keyword_reads, "CACHE_MIN_DF", 20)
    monkeypatch.setattr(keyword_warming, "_warming", {})
    small = await corpus(sessions, **zipf_corpus(100, seed=1))
    large = await corpus(sessions, **zipf_corpus(300, seed=2))
    async with sessions() as session:
        # Far larger than any other test's (PostgreSQL's database is shared).
        for docs, chunks in ((small, 10**9 - 1), (large, 10**9)):
            document = await session.get(KnowledgeDocument, docs.document_id)
            assert document is not None
            document.chunks = chunks
        await session.commit()
    df = await counters(sessions, large.collection_id)
    top = max(n for t, n in df.items() if t[0] != "#")
    # Room for the largest collection's most frequent term only.
    read = await keyword_index.warm_largest(sessions, budget=top + 1, collections=2)
    assert read == top
    assert kept.collection(large.collection_id) is not None
    assert kept.collection(small.collection_id) is None
    assert large.collection_id in keyword_warming._warming  # its first search will not warm again
    await keyword_index.warm_largest(sessions, budget=10**6, collections=2)
    small_entry = kept.collection(small.collection_id)
    assert small_entry is not None and small_entry.terms
