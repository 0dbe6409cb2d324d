"""Models: tiny causal LMs built from a config, loading any HF causal LM, the tokenizer compatibility
check between student and teacher, and per-token log-probabilities.

Every model is a plain `transformers` causal LM (`Qwen3ForCausalLM` / `LlamaForCausalLM` for the tiny
ones), so the same code runs a 0.6M-parameter model built from scratch or a pretrained Qwen3 from the hub.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen3Config,
)

from atod.agent.config import ModelsConfig, ModelSpec

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFoundError(FileNotFoundError):
    """A model or tokenizer could not be found locally (and could not or may not be downloaded)."""


class NotACausalLMError(ValueError):
    """A model was found but is not a causal LM (e.g. an encoder or an encoder-decoder)."""


class TokenizerMismatchError(ValueError):
    """Student and teacher tokenizers differ: per-token teacher log-probs would be silently wrong."""


def build_tiny_model(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    """A randomly initialised causal LM of architecture `spec.arch` over `tokenizer`'s vocabulary.

    Deterministic in `seed` (the global torch RNG is saved and restored around the initialisation).
    Embeddings are tied (the usual choice for small models). Save it with `model.save_pretrained(dir)`.
    """
    arch = spec.arch
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "head_dim": arch.hidden_size // arch.num_heads,
        "max_position_embeddings": arch.max_position_embeddings,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
        "rms_norm_eps": 1e-6,
    }
    config = Qwen3Config(**common) if arch.architecture == "qwen3" else LlamaConfig(**common)
    config.dtype = DTYPES[spec.dtype]
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[spec.dtype])
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _not_found(what: str, name: str, err: Exception) -> ModelNotFoundError:
    where = "a local directory" if Path(name).exists() else "not a local directory"
    how = ("HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set, so it can only come from the local Hugging Face cache"
           if _offline() else "and it could not be downloaded from the Hugging Face hub")
    return ModelNotFoundError(f"{what} {name!r} could not be loaded ({where}; {how}): {err}")


def load_tokenizer(path_or_name: str | Path) -> PreTrainedTokenizerBase:
    """Any HF tokenizer (local directory or hub name). Raises ModelNotFoundError naming it if missing."""
    name = str(path_or_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise _not_found("tokenizer", name, e) from None
    if len(tokenizer) < 2:  # transformers 5 builds an empty tokenizer for a folder with weights only
        raise ModelNotFoundError(f"tokenizer {name!r} has {len(tokenizer)} token(s): the folder holds no tokenizer "
                                 "files; save the tokenizer the model was trained with beside it")
    return tokenizer


@contextlib.contextmanager
def quiet_hf_progress():
    """Silence transformers' per-save/per-load progress bars (restored afterwards): a stage loads dozens of
    models, and a bar for each buries the stage's own progress."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# transformers initialises weights on the meta device through process-global state, so two threads
# loading at once can see each other's meta tensors ("Cannot copy out of meta tensor"): load one at a time.
_LOAD_LOCK = threading.Lock()


# how the class names of decoder-only LMs end (GPT2LMHeadModel; Gemma 3's AutoModelForCausalLM class is
# Gemma3ForConditionalGeneration, accepted when the config is not an encoder-decoder's)
CAUSAL_LM_ARCHITECTURES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _check_causal_lm_config(name: str, config) -> None:
    """NotACausalLMError unless `config` is a causal LM's: its config class must have an AutoModelForCausalLM
    class (T5Config has none), and its `architectures` (the class save_pretrained recorded), when present,
    must name one ending in CAUSAL_LM_ARCHITECTURES, and it must not be an encoder-decoder's: a BERT saved
    as BertModel or BertForMaskedLM would otherwise load as BertLMHeadModel, with a random or a
    bidirectional head, silently, and a BART as BartForCausalLM without its encoder."""
    archs = list(getattr(config, "architectures", None) or [])
    if (type(config) in MODEL_FOR_CAUSAL_LM_MAPPING and not getattr(config, "is_encoder_decoder", False)
            and (not archs or any(a.endswith(CAUSAL_LM_ARCHITECTURES) for a in archs))):
        return
    raise NotACausalLMError(f"model {name!r} is not a causal LM: its config is {type(config).__name__} "
                            f"(architectures: {archs or 'not recorded'}); expected a decoder-only model whose "
                            f"architectures end in {' or '.join(CAUSAL_LM_ARCHITECTURES)}")


def _check_no_missing_weights(name: str, model: PreTrainedModel, missing: list[str]) -> None:
    """NotACausalLMError when the checkpoint lacks weights of the loaded model (transformers initialises
    them at random): e.g. an encoder without `architectures` in its config loaded with an LM head."""
    if missing:
        first = ", ".join(sorted(missing)[:5])
        raise NotACausalLMError(f"model {name!r} loads as {type(model).__name__} but its checkpoint lacks "
                                f"{len(missing)} of its weights ({first}), which would be random: not a "
                                f"causal LM checkpoint")


def load_model(path_or_name: str | Path, spec: ModelSpec | None = None,
               device: torch.device | str = "cpu") -> PreTrainedModel:
    """Any HF causal LM (local directory or hub name) in `spec.dtype` (without a spec: the checkpoint's own,
    `dtype="auto"`) on `device`, in eval mode.
    Raises ModelNotFoundError naming the model if it is missing (e.g. offline and not cached),
    NotACausalLMError if it is another kind of model (see `_check_causal_lm_config`,
    `_check_no_missing_weights`) and ValueError naming it if its safetensors weights cannot be read."""
    name = str(path_or_name)
    dtype = DTYPES[spec.dtype] if spec is not None else "auto"
    config = _causal_lm_config(name)
    try:
        with _LOAD_LOCK, quiet_hf_progress():
            model, info = AutoModelForCausalLM.from_pretrained(name, config=config, dtype=dtype,
                                                                output_loading_info=True)
    except SafetensorError as e:
        raise ValueError(f"model {name!r}: its safetensors weights could not be read (truncated or corrupt "
                         f"file?): {e}") from None
    except (OSError, ValueError) as e:
        raise _not_found("model", name, e) from None
    _check_no_missing_weights(name, model, info["missing_keys"])
    return model.to(device).eval()


def _causal_lm_config(name: str):
    """The model's config, checked to be a causal LM's (ModelNotFoundError naming it if missing)."""
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise _not_found("model", name, e) from None
    _check_causal_lm_config(name, config)
    return config


def check_model_available(path_or_name: str | Path) -> None:
    """Without loading its weights: that the model's config is there and is a causal LM's, and that its
    tokenizer is there. Raises as `load_model` / `load_tokenizer` would (ModelNotFoundError naming it,
    NotACausalLMError): for checks before any compute."""
    _causal_lm_config(str(path_or_name))
    load_tokenizer(path_or_name)


def deterministic_cuda() -> None:
    """Same seed, same GPU, same result: deterministic CUDA kernels for the rest of the process.

    Without it two runs of the same seed on an H200 agreed on every sampled token for 3 steps but their
    losses differed in the 7th digit (atomic-add reductions), which sampling turns into different
    trajectories later. cuBLAS needs CUBLAS_WORKSPACE_CONFIG before its first call (a user's own value
    is kept). Strict, not `warn_only`: with `warn_only=True` the backward of PyTorch's memory-efficient
    (fp32) and flash (bf16) attention keeps its atomic-add kernel and only warns, and runs still differed
    (H200, 2026-12-04); strict, they were identical. An op with no deterministic kernel raises, naming it.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def resolve_device(models_cfg: ModelsConfig) -> torch.device:
    """`models.device`: auto -> cuda when available else cpu; cuda when none is available is an error.
    Also applies `models.torch_threads` (0 keeps torch's default) and, on CUDA, `deterministic_cuda`."""
    if models_cfg.torch_threads > 0:
        torch.set_num_threads(models_cfg.torch_threads)
    if models_cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("models.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if models_cfg.device in ("cuda", "auto") and torch.cuda.is_available():
        deterministic_cuda()
        return torch.device("cuda")
    return torch.device("cpu")


def check_compatible(student_tok: PreTrainedTokenizerBase, teacher_tok: PreTrainedTokenizerBase) -> None:
    """Refuse (TokenizerMismatchError, naming every difference) unless the two tokenizers have the same
    vocabulary (token -> id), the same special tokens and the same chat template. Teacher scoring reads
    the student's token ids, so anything else would give silently wrong log-probs."""
    problems = []
    sv, tv = student_tok.get_vocab(), teacher_tok.get_vocab()
    if sv != tv:
        only_s = sorted(set(sv) - set(tv))[:5]
        only_t = sorted(set(tv) - set(sv))[:5]
        moved = sorted(k for k in set(sv) & set(tv) if sv[k] != tv[k])[:5]
        problems.append(f"vocabularies differ (student {len(sv)} tokens, teacher {len(tv)}; only in student: "
                        f"{only_s}, only in teacher: {only_t}, different ids: {moved})")
    for attr in ("pad_token", "bos_token", "eos_token", "unk_token"):
        s, t = getattr(student_tok, attr), getattr(teacher_tok, attr)
        if s != t:
            problems.append(f"{attr} differs (student {s!r}, teacher {t!r})")
    if sorted(map(str, student_tok.all_special_tokens)) != sorted(map(str, teacher_tok.all_special_tokens)):
        problems.append(f"special tokens differ (student {student_tok.all_special_tokens}, "
                        f"teacher {teacher_tok.all_special_tokens})")
    if student_tok.chat_template != teacher_tok.chat_template:
        problems.append("chat templates differ")
    if problems:
        raise TokenizerMismatchError("student and teacher tokenizers are not compatible: " + "; ".join(problems)
                                     + ". Teacher and student must share one tokenizer and chat template.")


def token_logprobs(model: PreTrainedModel, input_ids_B_T: torch.Tensor, attention_mask_B_T: torch.Tensor,
                   chunk_tokens: int = 4096) -> torch.Tensor:
    """Per-token log-probabilities of a batch under `model`.

    input_ids_B_T: long (B, T); attention_mask_B_T: (B, T), 1 on real tokens (left or right padding).
    Returns float32 (B, T): entry t is log p(input_ids[t] | input_ids[:t]); entry 0 and padding are 0.

    Differentiable (no no_grad here; callers wrap it when they need none). Memory: the model's logits
    (B, T, V) in the model dtype are unavoidable with a generic forward; the float32 log-normaliser is
    computed `chunk_tokens` positions at a time as logit[target] - logsumexp(logits), so no float32
    (B, T, V) log_softmax is materialised.
    """
    mask_B_T = attention_mask_B_T.to(torch.long)
    position_ids_B_T = (mask_B_T.cumsum(-1) - 1).clamp(min=0)
    logits_B_T_V = model(input_ids=input_ids_B_T, attention_mask=mask_B_T, position_ids=position_ids_B_T,
                         use_cache=False).logits
    B, T = input_ids_B_T.shape
    # Predict token t+1 from position t.
    logits_N_V = logits_B_T_V[:, :-1].reshape(B * (T - 1), -1)
    targets_N = input_ids_B_T[:, 1:].reshape(-1)
    pieces = []
    for start in range(0, logits_N_V.shape[0], chunk_tokens):
        chunk_n_V = logits_N_V[start:start + chunk_tokens].float()
        target_logit_n = chunk_n_V.gather(-1, targets_N[start:start + chunk_tokens, None]).squeeze(-1)
        pieces.append(target_logit_n - torch.logsumexp(chunk_n_V, dim=-1))
    lp_B_Tm1 = torch.cat(pieces).view(B, T - 1) if pieces else logits_N_V.new_zeros(B, 0, dtype=torch.float32)
    # Zero where the target or its context is padding.
    valid_B_Tm1 = (mask_B_T[:, 1:] * mask_B_T[:, :-1]).bool()
    lp_B_Tm1 = torch.where(valid_B_Tm1, lp_B_Tm1, torch.zeros_like(lp_B_Tm1))
    return torch.cat([lp_B_Tm1.new_zeros(B, 1), lp_B_Tm1], dim=1)


def _left_aligned_generated_logits(model, input_ids_B_T: torch.Tensor, attention_mask_B_T: torch.Tensor,
                                   loss_mask_B_T: torch.Tensor):
    """The relayout behind `generated_logprobs` / `generated_logits`: rows moved to LEFT padding so that
    every generated token sits in the last K positions, and the model's float32 logits of those positions.

    Returns None when no token is generated, else (logits_B_K_V, ids_B_T, first, shift_B): logits_B_K_V[b, k]
    predicts left-aligned token first + k of row b; original position p of row b is left position p + shift_B[b].
    """
    T = input_ids_B_T.shape[1]
    dev = input_ids_B_T.device
    len_B = attention_mask_B_T.long().sum(1)
    shift_B = T - len_B
    pos_T = torch.arange(T, device=dev)
    src_B_T = pos_T[None, :] - shift_B[:, None]  # left-aligned position j holds original position j - shift
    real_B_T = src_B_T >= 0
    src_B_T = src_B_T.clamp(min=0)
    ids_B_T = torch.where(real_B_T, input_ids_B_T.gather(1, src_B_T), torch.zeros_like(input_ids_B_T))
    gen_B_T = loss_mask_B_T.bool().gather(1, src_B_T) & real_B_T
    if not gen_B_T.any():
        return None
    first = int(gen_B_T.any(0).nonzero().min())
    K = T - first  # positions first .. T-1 hold every generated token
    attn_B_T = real_B_T.long()
    logits_B_K1_V = model(input_ids=ids_B_T, attention_mask=attn_B_T,
                          position_ids=(attn_B_T.cumsum(-1) - 1).clamp(min=0), use_cache=False,
                          logits_to_keep=K + 1).logits
    logits_B_K_V = logits_B_K1_V[:, :-1].float()  # position first-1+k predicts token first+k
    return logits_B_K_V, ids_B_T, first, shift_B


def unwrap_model(model):
    """The causal LM inside a DistributedDataParallel wrapper (for its signature and attributes; forward
    passes go through the wrapper, which synchronises the gradients)."""
    return getattr(model, "module", model)


def generated_logprobs(model, input_ids_B_T: torch.Tensor, attention_mask_B_T: torch.Tensor,
                       loss_mask_B_T: torch.Tensor) -> torch.Tensor:
    """`token_logprobs` on the generated tokens only (float32 (B, T), 0 off the loss mask), cheaper.

    Rows are right-padded with the response at the end of each row's real tokens (per-turn rows). The
    rows are re-laid out with LEFT padding, so every row's response sits in the last K positions, and
    the model is asked for the logits of those positions only (`logits_to_keep`): the vocabulary
    projection and the log-normaliser skip the prompt, which is most of a row. Same numbers as
    `token_logprobs` (up to float rounding); falls back to it for models without `logits_to_keep`.
    """
    if "logits_to_keep" not in inspect.signature(unwrap_model(model).forward).parameters:
        lp_B_T = token_logprobs(model, input_ids_B_T, attention_mask_B_T)
        return torch.where(loss_mask_B_T.bool(), lp_B_T, torch.zeros_like(lp_B_T))
    B, T = input_ids_B_T.shape
    dev = input_ids_B_T.device
    left = _left_aligned_generated_logits(model, input_ids_B_T, attention_mask_B_T, loss_mask_B_T)
    if left is None:
        return torch.zeros((B, T), dtype=torch.float32, device=dev)
    logits_B_K_V, ids_B_T, first, shift_B = left
    targets_B_K = ids_B_T[:, first:]
    lp_B_K = logits_B_K_V.gather(-1, targets_B_K[..., None]).squeeze(-1) - torch.logsumexp(logits_B_K_V, dim=-1)
    lp_left_B_T = torch.cat([lp_B_K.new_zeros(B, first), lp_B_K], dim=1)
    # back to the original right-padded layout: original position p sits at p + shift
    back_B_T = (torch.arange(T, device=dev)[None, :] + shift_B[:, None]).clamp(max=T - 1)
    lp_B_T = lp_left_B_T.gather(1, back_B_T)
    return torch.where(loss_mask_B_T.bool(), lp_B_T, torch.zeros_like(lp_B_T))


def generated_logits(model, input_ids_B_T: torch.Tensor, attention_mask_B_T: torch.Tensor,
                     loss_mask_B_T: torch.Tensor) -> torch.Tensor:
    """The float32 logits that predict each generated token: (N, V), N = loss_mask_B_T.sum(), rows in the
    order of `loss_mask_B_T.nonzero()` (row-major). Same layout trick as `generated_logprobs` (logits of
    the response positions only); differentiable. For the full-distribution KL ablation (`opd_full`)."""
    mask_B_T = loss_mask_B_T.bool()
    b_N, p_N = mask_B_T.nonzero(as_tuple=True)
    if "logits_to_keep" not in inspect.signature(unwrap_model(model).forward).parameters:
        mask = attention_mask_B_T.long()
        logits_B_T_V = model(input_ids=input_ids_B_T, attention_mask=mask,
                             position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=False).logits
        return logits_B_T_V[b_N, p_N - 1].float()  # position p - 1 predicts token p
    left = _left_aligned_generated_logits(model, input_ids_B_T, attention_mask_B_T, mask_B_T)
    if left is None:
        vocab = unwrap_model(model).get_output_embeddings().weight.shape[0]
        return torch.zeros((0, vocab), dtype=torch.float32, device=input_ids_B_T.device)
    logits_B_K_V, _, first, shift_B = left
    return logits_B_K_V[b_N, p_N + shift_B[b_N] - first]
