"""The embedded tokenizer: a small byte-level BPE vocabulary learnt from the benchmarks' own texts.

Why byte-level BPE and not a pure word-level vocabulary: decoding must give back the action text
(`search[red shoes]`, `click[< prev]`, `cabinet 12`), and a model may emit any token sequence. A
word-level model loses the spacing around brackets and maps unseen words to <unk>; byte-level BPE
round-trips every ASCII string, and with a vocabulary of a couple of thousand pieces learnt from the
generated corpus nearly every benchmark word (object names, receptacles, option values, the prompt's own
words) is one token anyway. Tags (`<action>`, `</action>`, ...) are added tokens: always a single token,
never split, and kept by `decode(..., skip_special_tokens=True)` so that responses can be parsed after
decoding. Characters outside printable ASCII, tab and newline map to the unknown token.

Every text segment between tags/special tokens gets a prefix space (ByteLevel add_prefix_space), so a
word has the same token after `<action>` as inside the prompt's admissible list (`| click[...]`): the
model copies token ids, not two spellings of each word. The price: decoding puts one space after a tag
(`<action> go to desk 1</action>`), which action extraction strips anyway.

The chat template is ChatML (`<|im_start|>role\\ncontent<|im_end|>\\n`), the one Qwen models use, so
`tokenizer.apply_chat_template(messages, add_generation_prompt=True)` behaves as with a real HF model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from atod.agent.config import TokenizerSpec
from atod.agent.vocab import BOS, EOS, PAD, SPECIAL_TOKENS, TAG_TOKENS, UNK, ascii_alphabet

NUMBER = re.compile(r"\b\d{3,4}\b")  # what `whole_numbers` keeps whole: Search-QA's years
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _prompt_boilerplate() -> list[str]:
    """Texts of the prompt templates and chat roles, so that their words become whole tokens."""
    from atod.agent.prompts import render_prompt

    texts = ["user", "assistant", "system"]
    for benchmark in ("alfworld", "webshop", "searchqa"):
        for think in (False, True):
            texts.append(render_prompt(benchmark, "goal", [("observation", "action")] * 2, "observation",
                                       ["look", "inventory"], step=3, history_length=2, think=think))
    return texts


def build_tokenizer(texts: Iterable[str], spec: TokenizerSpec,
                    whole_terms: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """Learn a byte-level BPE tokenizer of at most `spec.vocab_size` tokens from `texts` (benchmark
    corpus texts; the prompt templates' own words are added here) and wrap it as a HF fast tokenizer with
    pad/unk/bos/eos, the tag tokens and a ChatML chat template. Deterministic for the same texts.

    `whole_terms` (the benchmarks' `copy_terms`: product ids, entity names) become one added token each,
    on top of `spec.vocab_size`, matched only as whole words. A 10-character id is 8-10 BPE pieces,
    which a tiny model trained from scratch does not learn to copy from its prompt; one token it does.
    Like the tags they cut the text into segments, so the piece after one gets a prefix space
    (`click[b0ae5rru5o ]` decodes with a space before `]`).

    `spec.whole_numbers` adds every 3-4 digit number of `texts` (Search-QA's years) to those terms.
    `spec.split_digits` makes every digit its own piece (as Qwen's and Llama's tokenizers do), so a
    number is copied digit by digit with the same tokens wherever it appears."""
    alphabet = ascii_alphabet()  # spec.vocab_size is above these and the special and tag tokens (VOCAB_FLOOR)
    tok = Tokenizer(models.BPE(unk_token=UNK))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    # Digits after the byte-level split, so the prefix space stays its own piece (` 1097` -> `Ġ` 1 0 9 7).
    tok.pre_tokenizer = (pre_tokenizers.Sequence([byte_level, pre_tokenizers.Digits(individual_digits=True)])
                         if spec.split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size - len(TAG_TOKENS),
        min_frequency=spec.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    corpus = [t for t in texts if t] + _prompt_boilerplate()
    # The trainer counts words, so the order of texts does not change the result.
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, single_word=False, normalized=False, special=False) for t in TAG_TOKENS])
    terms = sorted(set(whole_terms))
    if spec.whole_numbers:
        terms = sorted(set(terms) | {n for t in corpus for n in NUMBER.findall(t)})
    tok.add_tokens([AddedToken(t, single_word=True, normalized=False, special=False) for t in terms])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def benchmarks_tokenizer(benchmarks: Iterable, spec: TokenizerSpec) -> PreTrainedTokenizerFast:
    """The embedded pipeline's tokenizer, as `prepare` builds it: `build_tokenizer` over every benchmark's
    `corpus_texts()`, with their `copy_terms()` as whole tokens when `spec.whole_terms` is on.
    `benchmarks` are `atod.envs` Benchmark objects (the configured `prepare.benchmarks`, in any order:
    neither the texts' nor the terms' order changes the result)."""
    benchmarks = list(benchmarks)
    texts = [text for bench in benchmarks for text in bench.corpus_texts()]
    terms = [term for bench in benchmarks for term in bench.copy_terms()] if spec.whole_terms else ()
    return build_tokenizer(texts, spec, terms)


def stop_token_ids(tokenizer, stop_strings: Iterable[str]) -> list[int]:
    """Token ids of the closing tags that end a response (each must be a single token) plus EOS.

    Raises ValueError naming the tag when a tag is not one token (e.g. a pretrained tokenizer without
    the tags added): stopping on it would need string matching, which `collect_rollouts` does not do."""
    ids = []
    for s in stop_strings:
        enc = tokenizer.encode(s, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(f"stop tag {s!r} is not a single token of this tokenizer (got {len(enc)} tokens); "
                             "add the tags as tokens (tokenizer.add_tokens) and resize the model's embeddings")
        ids.append(enc[0])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
