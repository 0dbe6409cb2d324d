"""The embedded tokenizer's fixed tokens: the chat-template and tag tokens and the byte-level symbols of
printable ASCII. Kept apart from atod.agent.tokenizer (which needs `tokenizers` and `transformers`) so that
the config can check `models.tokenizer.vocab_size` against them (VOCAB_FLOOR) before anything is built."""

PAD, UNK, BOS, EOS = "<|pad|>", "<|unk|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
TAG_TOKENS = (
    "<action>", "</action>", "<think>", "</think>", "<search>", "</search>",
    "<answer>", "</answer>", "<information>", "</information>",
)


def ascii_alphabet() -> list[str]:
    """The byte-level symbols of printable ASCII plus tab and newline."""
    # GPT-2's byte -> unicode table (what the ByteLevel pre-tokenizer uses).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = {b: chr(c) for b, c in zip(bs, cs, strict=True)}
    wanted = list(range(32, 127)) + [ord("\t"), ord("\n")]
    return [table[b] for b in wanted]


# what an embedded vocabulary holds before BPE learns a single merge: 97 + 4 + 10 = 111 tokens
VOCAB_FLOOR = len(ascii_alphabet()) + len(SPECIAL_TOKENS) + len(TAG_TOKENS)
