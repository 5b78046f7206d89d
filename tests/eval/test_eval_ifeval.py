"""The offline IFEval checkers: each instruction by hand, IFEval's words and sentences without
NLTK, and IFEval's published GPT-4 responses."""

from __future__ import annotations

import pytest

from hf_mig.eval import ifeval as obj


@pytest.mark.parametrize(
    ("iid", "response", "kwargs", "expected"),
    [
        ("punctuation:no_comma", "no commas here", {}, True),
        ("punctuation:no_comma", "one, comma", {}, False),
        (
            "length_constraints:number_words",
            "one two three",
            {"relation": "less than", "num_words": 4},
            True,
        ),
        (
            "length_constraints:number_words",
            "it's two-words",
            {"relation": "at least", "num_words": 5},
            False,
        ),
        ("length_constraints:number_paragraphs", "a\n***\nb\n***\n", {"num_paragraphs": 2}, True),
        ("length_constraints:number_paragraphs", "a\n***\n\n***\nb", {"num_paragraphs": 2}, False),
        (
            "length_constraints:nth_paragraph_first_word",
            'x y\n\n"Summer, said" z',
            {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "summer"},
            True,
        ),
        ("detectable_content:number_placeholders", "[a] and [b]", {"num_placeholders": 2}, True),
        ("detectable_content:postscript", "Hi.\nP.S. bye", {"postscript_marker": "P.S."}, True),
        ("detectable_content:postscript", "Hi. PS bye", {"postscript_marker": "P.S."}, False),
        ("detectable_format:number_bullet_lists", "* a\n* b\n- c", {"num_bullets": 3}, True),
        ("detectable_format:number_bullet_lists", "* a\n** b", {"num_bullets": 2}, False),
        ("detectable_format:constrained_response", "  My answer is maybe. ", {}, True),
        (
            "detectable_format:number_highlighted_sections",
            "*one* and **two** and ** **",
            {"num_highlights": 2},
            True,
        ),
        (
            "detectable_format:multiple_sections",
            "SECTION 1 a SECTION 2 b",
            {"section_spliter": "SECTION", "num_sections": 2},
            True,
        ),
        ("detectable_format:json_format", '```json\n{"a": 1}\n```', {}, True),
        ("detectable_format:json_format", "{a: 1}", {}, False),
        ("detectable_format:title", "<<My Title>>\ntext", {}, True),
        ("combination:two_responses", "first******second", {}, True),
        ("combination:two_responses", "same******same", {}, False),
        (
            "combination:repeat_prompt",
            "Say this. Then more",
            {"prompt_to_repeat": "say THIS."},
            True,
        ),
        (
            "startend:end_checker",
            'Done. Any other questions?"',
            {"end_phrase": "Any other questions?"},
            True,
        ),
        ("startend:quotation", '"quoted"', {}, True),
        ("keywords:existence", "Has Alpha and beta", {"keywords": ["alpha", "beta"]}, True),
        ("keywords:forbidden_words", "the cathedral", {"forbidden_words": ["cat"]}, True),
        (
            "keywords:frequency",
            "yes YES yes",
            {"keyword": "yes", "relation": "at least", "frequency": 3},
            True,
        ),
        (
            "keywords:letter_frequency",
            "Banana",
            {"letter": "a", "let_relation": "less than", "let_frequency": 3},
            False,
        ),
        ("punctuation:no_comma", "   ", {}, False),  # an empty response never follows
        (
            "length_constraints:number_sentences",
            "One. Two.",
            {"relation": "at least", "num_sentences": 2},
            True,
        ),
        (
            "length_constraints:number_sentences",
            "Dr. Smith lives in the U.S.A. and has a Ph.D. from mit.edu, 3.5 km away. Wow!",
            {"relation": "less than", "num_sentences": 3},
            True,  # two sentences: "... away." and "Wow!"
        ),
        (
            "length_constraints:number_sentences",
            "1. apples\n2. pears\n3. plums",
            {"relation": "less than", "num_sentences": 2},
            True,  # a numbered list without final periods is one sentence for Punkt
        ),
        (
            "change_case:capital_word_frequency",
            "DON'T PANIC, use AT&T.",
            {"capital_relation": "at least", "capital_frequency": 5},
            True,  # DO N'T PANIC AT T
        ),
        (
            "change_case:capital_word_frequency",
            "Don't panic, I'm fine with COVID-19 and AI/ML.",
            {"capital_relation": "less than", "capital_frequency": 4},
            True,  # I COVID-19 AI/ML ("n't" and "'m" are not capitals)
        ),
        (
            "change_case:capital_word_frequency",
            "Don't panic, I'm fine with COVID-19 and AI/ML.",
            {"capital_relation": "less than", "capital_frequency": 3},
            False,
        ),
    ],
)
def test_ifeval_checkers_golden_by_hand(iid, response, kwargs, expected):
    assert obj.check_instruction(iid, response, kwargs) is expected


# Words as NLTK's word_tokenize gives them (worked out by hand from its Treebank rules); the
# all-capital ones are what IFEval's capital_word_frequency counts.
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("DON'T do it, I'M SURE.", ["DO", "N'T", "do", "it", ",", "I", "'M", "SURE", "."]),
        ("Don't can't N't", ["Do", "n't", "ca", "n't", "N't"]),
        ("JOHN'S DOGS' WE'LL", ["JOHN", "'S", "DOGS", "'", "WE", "'LL"]),
        ("AT&T CANNOT win; HELLO,WORLD", ["AT", "&", "T", "CAN", "NOT", "win", ";", "HELLO",
                                          ",", "WORLD"]),
        ("3,000 at 10:30, (NASA) WAIT...WHAT A--B", ["3,000", "at", "10:30", ",", "(", "NASA",
                                                     ")", "WAIT", "...", "WHAT", "A", "--", "B"]),
        ("DON’T “GO” U.S.A. COVID-19 AI/ML", ["DON", "’", "T", "“", "GO", "”", "U.S.A.",
                                              "COVID-19", "AI/ML"]),
        ("Mr. Smith, e.g. 'EM gonna", ["Mr.", "Smith", ",", "e.g", ".", "'", "EM", "gon", "na"]),
    ],
)  # fmt: skip
def test_ifeval_word_tokenize_golden(text, tokens):
    assert obj.ifeval_word_tokenize(text) == tokens


def test_ifeval_sentence_splitter_rules():
    split = obj.ifeval_split_sentences

    def rules(text):
        return split(text, punkt_boundaries=False)

    # IFEval's own examples for its split_into_sentences (instructions_util_test.py)
    text = (
        "\n  The U.S.A has many Ph.D. students. They will often haven a .com website\nsharing "
        "the research that they have done.\n  "
    )
    expected = [
        "The U.S.A has many Ph.D. students.",
        "They will often haven a .com website sharing the research that they have done.",
    ]
    assert split(text) == rules(text) == expected
    # titles, initials, decimals and acronyms do not end a sentence; an acronym or a suffix
    # before a sentence starter does (the suffix loses its period, as upstream); ? ! and an
    # ellipsis always do; a closing double quote moves before the final mark
    text = "Mr. J. Smith paid 3.50 in the U.S. He left. Acme Inc. It grew! Why? Ok..."
    assert rules(text) == split(text) == [
        "Mr. J. Smith paid 3.50 in the U.S.", "He left.", "Acme Inc", "It grew!", "Why?", "Ok...",
    ]  # fmt: skip
    assert rules('She said "hi." Then left.') == ['She said "hi".', "Then left."]
    # where Punkt (which upstream's count uses) decides otherwise; each expected list is what
    # NLTK's Punkt returns for the text (modulo newlines)
    cases = {
        'She said "hi." Then left.': ['She said "hi."', "Then left."],
        "See notes.txt now. Wait... then go": ["See notes.txt now.", "Wait... then go"],
        "<p>One.</p>\n<p>Two.</p>": ["<p>One.</p> <p>Two.</p>"],
        "1. apples\n2. pears\n3. plums": ["1. apples 2. pears 3. plums"],
        "1. apples\n2. Pears": ["1. apples 2.", "Pears"],
        "'My answer is maybe.'": ["'My answer is maybe.'"],
        "Wow!!! Great (see p. 3, e.g. this). P.S. Bye, etc.). MR. SMITH left.": [
            "Wow!!!", "Great (see p. 3, e.g.", "this).", "P.S.", "Bye, etc.).", "MR. SMITH left.",
        ],
    }  # fmt: skip
    for text, expected in cases.items():
        assert split(text) == expected, text
        assert rules(text) != expected, text
    # IFEval's count_sentences examples (counted with Punkt upstream)
    for text, n in [("xx,x. xx,x! xx/x. x{x}x? x.", 5), ("xx,x! xxxx. x(x)x?", 3),
                    ("xxxx. xx,x! xx|x. x&x x?", 4), ("xx-x]xx,x! x{x}xx,x.", 2)]:  # fmt: skip
        assert len(split(text)) == n, text


@pytest.mark.parametrize("with_langdetect", [True, False], ids=["langdetect", "no-langdetect"])
def test_ifeval_on_real_gpt4_responses(data_dir, monkeypatch, with_langdetect):
    d = data_dir / "ifeval"
    if not d.is_dir():
        pytest.skip("ifeval data not available")
    if with_langdetect and not obj._langdetect_available():
        pytest.skip("langdetect not installed (the eval extra)")
    if not with_langdetect:
        monkeypatch.setattr(obj, "_langdetect_available", lambda: False)
    inputs = obj._read_jsonl(d / "input_data.jsonl")
    responses = obj._read_jsonl(d / "input_response_data_gpt4_20231107_145030.jsonl")
    res = obj.ifeval_score(inputs, responses)
    assert res.n_prompts == 541
    # one prompt (key 2785) was reworded after these responses were made: not scored
    assert res.unmatched == [2785]
    # the two NLTK-based checks are covered without NLTK; these counts are what NLTK's
    # word_tokenize and Punkt give on these responses (checked against NLTK outside the suite)
    assert res.per_instruction["change_case:capital_word_frequency"] == (17, 25)
    assert res.per_instruction["length_constraints:number_sentences"] == (35, 52)
    # the published strict prompt-level accuracy of these responses (IFEval's README:
    # 0.7689 = 416/541)
    published = 100 * 416 / 541
    # the published instruction-level accuracy (698/834) must be reachable: what we count
    # as followed plus at most every instruction we could not check
    ok = sum(v[0] for v in res.per_instruction.values())
    checked = sum(v[1] for v in res.per_instruction.values())
    assert ok <= 698 <= ok + (834 - checked)
    if with_langdetect:
        # every instruction is checked: all 540 scorable prompts, 417 followed (77.22%)
        assert not res.not_covered and res.n_prompts_covered == 540
        assert res.prompt_strict_covered == pytest.approx(100 * 417 / 540)
        assert (ok, checked) == (697, 832)
        assert abs(res.prompt_strict_covered - published) < 0.5
        # The remaining gap to the published 76.89%: prompt 2785's response answers its old
        # wording ("at least one placeholder"); scored with that wording, all 541 prompts give
        # 418/541 (77.26%) and 699/834 instructions, against 416/541 and 698/834 published.
        # The two NLTK-based checks take NLTK's decision on every response, so the two extra
        # prompts come from the other checkers or the 2023 library versions (langdetect).
        old = next(
            r for r in responses if "Shinto" in r["prompt"] and "one placeholder" in r["prompt"]
        )
        as_answered = [
            dict(i, prompt=old["prompt"], kwargs=[{"num_highlights": 3}, {"num_placeholders": 1}])
            if i["key"] == 2785
            else i
            for i in inputs
        ]
        full = obj.ifeval_score(as_answered, responses)
        assert full.unmatched == [] and full.n_prompts_covered == 541
        assert full.prompt_strict_covered == pytest.approx(100 * 418 / 541)
        assert abs(full.prompt_strict_covered - published) < 0.5
    else:
        # without langdetect the three language checks are not covered
        assert sorted(res.not_covered) == [
            "change_case:english_capital", "change_case:english_lowercase",
            "language:response_language",
        ]  # fmt: skip
        assert res.n_prompts_covered == 445
        assert res.prompt_strict_covered == pytest.approx(100 * 338 / 445)
        # the published value lies within the bounds this partial coverage implies
        assert res.prompt_strict_lower <= published <= res.prompt_strict_upper
