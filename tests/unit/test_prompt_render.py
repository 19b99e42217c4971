"""Prompt templates without the service: syntax checks, declared variables, render rules."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from chains.rag import RAG_ANSWER_PROMPT, check_answer_prompt
from prompts.content import checked_content
from prompts.errors import PromptError
from prompts.render import MAX_RENDER_CHARS, render_messages, to_openai
from prompts.starters import STARTERS
from prompts.syntax import MAX_SECTION_DEPTH

CHAT = [
    {"role": "system", "content": "You are {persona}."},
    {"role": "placeholder", "content": "{history}"},
    {"role": "user", "content": "{question}"},
]


def build(messages: list[dict[str, Any]], fmt: str = "f-string", **kw: Any) -> Any:
    return checked_content(messages, fmt, **kw)  # type: ignore[arg-type]


def user(text: str, fmt: str = "f-string") -> Any:
    return build([{"role": "user", "content": text}], fmt)


def refused(text: str, fmt: str = "f-string") -> PromptError:
    with pytest.raises(PromptError) as caught:
        user(text, fmt)
    assert caught.value.status_code == 422
    return caught.value


# --- used and declared variables --------------------------------------------------------


def test_used_variables_include_placeholders() -> None:
    content, _ = build(CHAT)
    assert content.input_variables == ["persona", "question"]
    assert content.optional_variables == ["history"]
    required, _ = build([*CHAT[:1], {"role": "placeholder", "content": "{h}", "optional": False}])
    assert required.input_variables == ["h", "persona"] and required.optional_variables == []
    assert content.messages[1] == {"role": "placeholder", "content": "{history}", "optional": True}


def test_declared_variables_must_match_the_text() -> None:
    content, _ = build(CHAT, input_variables=["question", "persona"])
    assert content.input_variables == ["persona", "question"]
    with_optional, _ = build(CHAT, input_variables=["question", "persona", "history"])
    assert with_optional.input_variables == ["persona", "question"]  # optional may be named
    with pytest.raises(PromptError) as caught:
        build(CHAT, input_variables=["question", "tone"])
    error = caught.value
    assert error.code == "input_variables_mismatch"
    assert "persona" in error.message and "tone" in error.message
    assert error.details == {"undeclared": ["persona"], "unused": ["tone"]}


def test_identical_content_hashes_the_same() -> None:
    a, _ = build(CHAT, params={"temperature": 0.2, "max_tokens": None})
    b, _ = build(
        [{**CHAT[0]}, {"role": "placeholder", "content": "{{history}}"}, CHAT[2]],
        params={"temperature": 0.2},
    )
    assert a.content_hash == b.content_hash  # placeholders and params normalized
    c, _ = build(CHAT, params={"temperature": 0.3})
    d, _ = build(CHAT, model="gpt-4o")
    assert len({a.content_hash, c.content_hash, d.content_hash}) == 3


def test_bad_messages_are_refused() -> None:
    for messages in (
        [],
        [{"role": "tool", "content": "x"}],
        [{"role": "user", "content": 3}],
        [{"role": "user", "content": "x", "optional": True}],
        [{"role": "placeholder", "content": "history"}],
        [{"role": "placeholder", "content": "{a} {b}"}],
        [{"role": "placeholder", "content": "{h}"}, {"role": "user", "content": "{h}"}],
    ):
        with pytest.raises(PromptError) as caught:
            build(messages)
        assert caught.value.code == "invalid_template", messages


# --- hostile templates ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{x.__class__}",
        "{x.__class__.__mro__[1].__subclasses__}",
        "{x[0]}",
        "{x.real}",
        "{0}",
        "{}",
        "{x!r}",
        "{x:>999999999}",
        "{x:{y}}",
        "{__import__}",
        "{",
        "}",
    ],
)
def test_f_string_fields_beyond_plain_names_are_refused(text: str) -> None:
    error = refused(text)
    assert error.code == "invalid_template"
    assert text in error.message or "brace" in error.message


@pytest.mark.parametrize(
    "text",
    [
        "{{x.__class__}}",
        "{{x.__globals__.os}}",
        "{{>partial}}",
        "{{#a}}unclosed",
        "{{a b}}",
        "{{#a}}" * (MAX_SECTION_DEPTH + 1) + "x" + "{{/a}}" * (MAX_SECTION_DEPTH + 1),
    ],
)
def test_hostile_mustache_is_refused(text: str) -> None:
    assert refused(text, "mustache").code == "invalid_template"


def test_rendering_never_evaluates_anything() -> None:
    """Values are data: braces in them stay text, objects are not walked."""
    _, prompt = user("Hello {name}")
    [message] = render_messages(prompt, {"name": "{__import__('os').system('id')}"})
    assert message.content == "Hello {__import__('os').system('id')}"
    _, mustache = user("{{user.name}}|{{user.0}}|{{{raw}}}", "mustache")
    [message] = render_messages(mustache, {"user": {"name": "{{raw}}"}, "raw": "{{user}}"})
    assert message.content == "{{raw}}||{{user}}"  # a value is never parsed as a template


def test_nested_sections_over_long_lists_are_refused_before_rendering() -> None:
    depth = MAX_SECTION_DEPTH
    _, prompt = user("{{#a}}" * depth + "xxxxxxxxxx" + "{{/a}}" * depth, "mustache")
    with pytest.raises(PromptError) as caught:
        render_messages(prompt, {"a": [{"n": i} for i in range(100)]})  # 10 * 100**4 chars
    assert caught.value.code == "render_too_large" and str(MAX_RENDER_CHARS) in caught.value.message
    [small] = render_messages(prompt, {"a": [{"n": 1}, {"n": 2}]})
    assert small.content == "xxxxxxxxxx" * 2**depth


# --- render rules -----------------------------------------------------------------------


def test_render_f_string_with_history() -> None:
    _, prompt = build(CHAT)
    history = [{"role": "user", "content": "I am Bob"}, {"role": "assistant", "content": "Hi Bob"}]
    rendered = render_messages(
        prompt, {"persona": "kind", "question": "Who am I?", "history": history}
    )
    assert to_openai(rendered) == [
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": "I am Bob"},
        {"role": "assistant", "content": "Hi Bob"},
        {"role": "user", "content": "Who am I?"},
    ]
    without = to_openai(
        render_messages(prompt, {"persona": "kind", "question": "Q", "history": []})
    )
    assert [m["role"] for m in without] == ["system", "user"]
    assert len(render_messages(prompt, {"persona": "p", "question": 42})) == 2  # numbers too


def test_missing_variables_are_named() -> None:
    _, prompt = build(CHAT)
    with pytest.raises(PromptError) as caught:
        render_messages(prompt, {"question": "Q"})
    assert caught.value.code == "missing_variables" and "persona" in caught.value.message
    assert caught.value.details == {"variables": ["persona"]}


def test_unexpected_variables_are_rejected_and_named() -> None:
    _, prompt = build(CHAT)
    with pytest.raises(PromptError) as caught:
        render_messages(prompt, {"persona": "p", "question": "q", "qestion": "typo"})
    assert caught.value.code == "unexpected_variables" and "qestion" in caught.value.message


@pytest.mark.parametrize(
    ("variables", "bad"),
    [
        ({"persona": {"a": 1}, "question": "q"}, "persona"),
        ({"persona": None, "question": "q"}, "persona"),
        ({"persona": True, "question": "q"}, "persona"),
        ({"persona": "p", "question": "q", "history": "not a list"}, "history"),
        (
            {"persona": "p", "question": "q", "history": [{"role": "tool", "content": "x"}]},
            "history",
        ),
        ({"persona": "p", "question": "q", "history": [{"role": "user", "content": 1}]}, "history"),
    ],
)
def test_badly_typed_values_are_named(variables: dict[str, Any], bad: str) -> None:
    _, prompt = build(CHAT)
    with pytest.raises(PromptError) as caught:
        render_messages(prompt, variables)
    assert caught.value.code == "invalid_variables" and bad in caught.value.message


def test_mustache_sections_paths_and_escaping() -> None:
    content, prompt = build(
        [
            {
                "role": "system",
                "content": "Team {{team.name}}:\n{{#members}}- {{name}}\n{{/members}}",
            },
            {"role": "user", "content": "{{question}} {{{raw}}}"},
        ],
        "mustache",
    )
    assert content.input_variables == ["members", "question", "raw", "team"]
    system, human = render_messages(
        prompt,
        {
            "team": {"name": "Core"},
            "members": [{"name": "Ann"}, {"name": "Bo"}],
            "question": "a < b?",
            "raw": "<kept>",
        },
    )
    assert system.content == "Team Core:\n- Ann\n- Bo\n"
    assert human.content == "a &lt; b? <kept>"  # LangChain's mustache escapes {{x}}, not {{{x}}}
    with pytest.raises(PromptError) as caught:
        render_messages(prompt, {"team": {}, "members": []})
    assert caught.value.code == "missing_variables"
    assert caught.value.details == {"variables": ["question", "raw"]}


# --- starters ---------------------------------------------------------------------------


def test_starters() -> None:
    assert set(STARTERS) == {"summarize", "translate", "rag-answer", "email-draft"}
    rag = STARTERS["rag-answer"]
    assert rag.content.input_variables == ["context", "question"]
    check_answer_prompt(rag.prompt)  # usable by the RAG graph as is
    history = [HumanMessage("earlier")]
    values = {"context": "[1] (a.txt)\nfacts", "question": "Q?", "history": history}
    assert rag.prompt.format_messages(**values) == RAG_ANSWER_PROMPT.format_messages(**values)
    assert render_messages(rag.prompt, values) == RAG_ANSWER_PROMPT.format_messages(**values)
    for starter in STARTERS.values():
        values = {v: "x" for v in starter.content.input_variables}
        assert render_messages(starter.prompt, values), starter.name
