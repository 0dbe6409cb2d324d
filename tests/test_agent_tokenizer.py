"""The embedded tokenizer: tags whole, faithful round trip of actions, chat template, save/load."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from atod.agent.config import TokenizerSpec
from atod.agent.prompts import extract_action
from atod.agent.tokenizer import CHAT_TEMPLATE, TAG_TOKENS, build_tokenizer, stop_token_ids
from atod.envs.webshop.env import parse_action

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["You arrive at cabinet 1. On the cabinet 1, you see a apple 2, and a mug 1.", "go to cabinet 12",
         "WebShop [SEP] Instruction: [SEP] i need red shoes, and price lower than 40.00 dollars [SEP] Search",
         "search[red shoes]", "click[< prev]", "click[b07abc123x]", "Doc 1(Title: \"Valdor\") a city"] * 3


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(TEXTS, TokenizerSpec(vocab_size=512))


def test_tags_and_specials_are_single_tokens(tok):
    for tag in TAG_TOKENS:
        assert len(tok.encode(tag, add_special_tokens=False)) == 1, tag
    assert tok.decode(tok.encode("<action>go to cabinet 1</action>", add_special_tokens=False),
                      skip_special_tokens=True) == "<action> go to cabinet 1</action>"
    assert tok.pad_token_id is not None and tok.eos_token_id is not None and tok.unk_token_id is not None
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id}) == 4
    ids = stop_token_ids(tok, ["</action>"])
    assert tok.convert_tokens_to_ids("</action>") in ids and tok.eos_token_id in ids


def test_frequent_words_are_whole(tok):
    for word in ["cabinet", "search", "click", "arrive"]:
        assert len(tok.encode(" " + word, add_special_tokens=False)) == 1, word
    # the same token after a tag as after a space (prefix space per segment)
    in_prompt = tok.encode("| click[b07abc123x]", add_special_tokens=False)[1:]
    assert tok.encode("<action>click[b07abc123x]", add_special_tokens=False)[1:] == in_prompt


@pytest.mark.parametrize("action", ["go to cabinet 12", "search[red shoes]", "click[< prev]", "click[b07abc123x]",
                                    "take apple 2 from countertop 3", "click[1.5 oz (pack of 2)]",
                                    "search[unseen words like zyzzyva 42]", "put  x\tin\ny"])
def test_round_trip_any_ascii(tok, action):
    response = f"<think>ok</think><action>{action}</action>"
    decoded = tok.decode(tok.encode(response, add_special_tokens=False), skip_special_tokens=True)
    assert "".join(decoded.split()) == "".join(response.split())  # at most a space after each tag
    assert extract_action("alfworld", decoded) == " ".join(action.split()).lower()


def test_chat_template_matches_chatml(tok):
    messages = [{"role": "user", "content": "hello there"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
    assert tok.chat_template == CHAT_TEMPLATE


def test_save_load_round_trip_and_determinism(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    assert again.chat_template == tok.chat_template
    text = "<action>click[< prev]</action> You arrive at cabinet 1."
    assert again.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
    shuffled = TEXTS[:]
    random.Random(0).shuffle(shuffled)
    assert build_tokenizer(shuffled, TokenizerSpec(vocab_size=512)).get_vocab() == tok.get_vocab()


def test_too_small_vocab_is_a_clear_error():
    # 111 = 97 byte-level ASCII symbols + 4 special + 10 tag tokens: a vocabulary of 112 learns one piece
    with pytest.raises(ValueError, match="vocab_size 111 leaves no room for a learnt piece"):
        TokenizerSpec(vocab_size=111)
    tok = build_tokenizer(TEXTS, TokenizerSpec(vocab_size=112))
    assert len(tok.get_vocab()) == 112
    assert TokenizerSpec(source="pretrained", vocab_size=64).vocab_size == 64  # ignored for a pretrained one


def _benchmarks():
    from atod.config import load_params
    from atod.envs import BENCHMARKS, build_benchmark

    prepare = load_params(ROOT / "params.yaml", profile="smoke").prepare
    return [build_benchmark(name, prepare) for name in BENCHMARKS]


@pytest.mark.parametrize(("whole_terms", "split_digits"), [(False, False), (True, False), (True, True)])
def test_expert_actions_round_trip_on_every_benchmark(whole_terms, split_digits):
    benchmarks = _benchmarks()
    texts = [t for b in benchmarks for t in b.corpus_texts()]
    terms = [t for b in benchmarks for t in b.copy_terms()] if whole_terms else []
    tok = build_tokenizer(texts, TokenizerSpec(split_digits=split_digits), terms)
    rng = random.Random(0)
    for bench in benchmarks:
        for split in bench.splits:
            for task in bench.tasks(split)[:3]:
                env = bench.make_env()
                result = env.reset(task)
                for _ in range(bench.max_turns):
                    if result.done:
                        break
                    action = env.expert_action(rng)
                    wrapped = action if bench.name == "searchqa" else f"<action>{action}</action>"
                    decoded = tok.decode(tok.encode(wrapped, add_special_tokens=False), skip_special_tokens=True)
                    expected = action if bench.name == "searchqa" else " ".join(action.split()).lower()
                    got = extract_action(bench.name, decoded)
                    if whole_terms:  # a whole term puts a space before the next piece: `click[b0x... ]`
                        got = got.replace(" ]", "]")
                        assert tok.encode(got) == tok.encode(expected)  # what the history re-encodes
                    assert got == extract_action(bench.name, wrapped) == expected
                    result = env.step(extract_action(bench.name, decoded))


def test_whole_terms_are_one_token_in_prompts_and_actions():
    """Product ids and entity names become one token each, the same token in an observation as in the
    action that copies it, and never matched inside a longer word."""
    terms = ["b07abc123x", "B07ABC123X", "Valdor", "Karboth"]
    tok = build_tokenizer(TEXTS, TokenizerSpec(vocab_size=512), terms)
    plain = build_tokenizer(TEXTS, TokenizerSpec(vocab_size=512))
    assert len(plain) < len(tok) <= len(plain) + len(terms)  # a term already in the vocabulary keeps its id
    ids = {t: tok.convert_tokens_to_ids(t) for t in terms}

    def pieces(text):
        return tok.encode(text, add_special_tokens=False)

    assert ids["b07abc123x"] in pieces("| click[b07abc123x] | click[< prev]")
    assert ids["b07abc123x"] in pieces("<action>click[b07abc123x]</action>")
    assert ids["B07ABC123X"] in pieces("[SEP] B07ABC123X [SEP] Red Shoes")
    assert ids["Valdor"] in pieces('Doc 1(Title: "Valdor") Valdor is a city.')
    assert pieces("<search>Karboth Valdor</search>")[1:4] == [ids["Karboth"], tok.convert_tokens_to_ids("Ġ"),
                                                              ids["Valdor"]]
    added = {i for i in ids.values() if i >= len(plain)}  # "Valdor" was a BPE piece already
    assert len(added) == 3 and not added & set(pieces("Valdorian Karbothson xb07abc123x"))
    clicked = extract_action("webshop", tok.decode(pieces("<action>click[b07abc123x]</action>")))
    assert clicked == "click[b07abc123x ]" and parse_action(clicked) == ("click", "b07abc123x")
    assert tok.decode(pieces("<answer>Karboth Valdor</answer>")) == "<answer>Karboth Valdor</answer>"
    assert build_tokenizer(TEXTS, TokenizerSpec(vocab_size=512), terms[::-1]).get_vocab() == tok.get_vocab()


def test_split_digits_gives_one_token_per_digit_and_round_trips():
    """`split_digits`: a year is the same digit tokens in a passage and in an answer, and decodes back."""
    texts = [*TEXTS, "It was founded in 1097. Karboth (born 1917) founded it in 1926."] * 3
    tok = build_tokenizer(texts, TokenizerSpec(vocab_size=512, split_digits=True))
    plain = build_tokenizer(texts, TokenizerSpec(vocab_size=512))

    def pieces(t, text):
        return [t.decode([i]) for i in t.encode(text, add_special_tokens=False)]

    assert pieces(tok, "founded in 1097.")[-5:] == ["1", "0", "9", "7", "."]
    assert pieces(tok, "<answer>1097</answer>") == ["<answer>", " ", "1", "0", "9", "7", "</answer>"]
    assert all(len(p.strip()) <= 1 for p in pieces(tok, "x12 3456") if any(c.isdigit() for c in p))
    assert any(len(p.strip()) > 1 and p.strip().isdigit() for p in pieces(plain, "founded in 1097 1917 1926"))
    for text in ("founded in 1097.", "search[size 10 red shoes]", "cabinet 12 and drawer 3"):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == " " + text  # the prefix space
    answer = "<answer>1097</answer>"
    assert extract_action("searchqa", tok.decode(tok.encode(answer))) == extract_action("searchqa", answer)


def test_whole_numbers_keeps_each_year_one_token():
    texts = [*TEXTS, "It was founded in 1097. Karboth (born 1917) founded it in 1926 for 40.00 dollars."] * 3
    tok = build_tokenizer(texts, TokenizerSpec(vocab_size=512, whole_numbers=True))
    for year in ("1097", "1917", "1926"):
        assert year in [tok.decode([i]) for i in tok.encode(f"founded in {year}.", add_special_tokens=False)]
    assert len(tok.encode("40.00", add_special_tokens=False)) > 1  # prices are not 3-4 digit words
    answer = "<answer>1097</answer>"
    assert extract_action("searchqa", tok.decode(tok.encode(answer))) == extract_action("searchqa", answer)
    with pytest.raises(ValueError, match="exclusive"):
        TokenizerSpec(split_digits=True, whole_numbers=True)


class _Bench:
    def __init__(self, texts, terms):
        self._texts, self._terms = texts, terms

    def corpus_texts(self):
        return list(self._texts)

    def copy_terms(self):
        return list(self._terms)


@pytest.mark.parametrize("whole_terms", [False, True])
def test_benchmarks_tokenizer_is_build_tokenizer_over_every_benchmark(whole_terms):
    """The pipeline's rule (prepare and both bench modules use it): every benchmark's texts, and their copy
    terms only when `whole_terms` is on; the benchmarks' order does not matter."""
    from atod.agent.tokenizer import benchmarks_tokenizer

    spec = TokenizerSpec(vocab_size=512, whole_terms=whole_terms)
    first, second = _Bench(TEXTS[:4], ["b07abc123x"]), _Bench(TEXTS[4:], ["Karboth"])
    tok = benchmarks_tokenizer([first, second], spec)
    expected = build_tokenizer(TEXTS, spec, ["b07abc123x", "Karboth"] if whole_terms else ())
    assert tok.get_vocab() == expected.get_vocab()
    assert benchmarks_tokenizer([second, first], spec).get_vocab() == tok.get_vocab()
    assert ("Karboth" in tok.get_vocab()) == whole_terms  # not a BPE piece of TEXTS: only a whole term adds it
