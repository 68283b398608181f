"""The background decision: which proposals are "none of the asked classes".

A query names the classes a user wants; everything else in the image is background. Each proposal first
gets its best asked class from its context crop (LVTA); a *background policy* then decides whether the
proposal is background instead:

``none``
    never: every pixel gets an asked class (uncovered pixels take the nearest label).
``threshold:T``
    the proposal's top class probability (softmax over the asked classes, context crop) is < ``T``.
``prompt`` / ``prompt:P``
    a land-cover background vocabulary (``prompts/background/landcover.txt``: bare soil, vegetation,
    water, road, built-up area, with synonyms) competes with the asked classes on the proposal's
    *masked* crop (everything outside the proposal blanked) and the vocabulary's summed probability
    is > ``P`` (default :data:`PROMPT_P`). The masked crop judges the region itself: a land-cover region's
    context crop shows the objects around it and scores like them.
``prompt:P+threshold:T``
    either rule (the default, :data:`DEFAULT_BACKGROUND`).

A background concept is dropped for a query that asks for one of its names (asking for "road" keeps
roads foreground). Pixels then take the label of the most confident covering proposal, background
included: a background proposal's confidence is its background probability (prompt) or its top class
probability (threshold only, so it yields to any confident covering object); see
:func:`dglrsis.lvta.assign_pixels`. ``P`` and ``T`` were tuned on the synthetic world's train split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import DglrsisError

PROMPT_P = 0.3  # background-vocabulary probability above which a proposal is background (prompt)
DEFAULT_BACKGROUND = "prompt:0.3+threshold:0.5"  # tuned on the world's train split (README)
DEFAULT_VOCAB = "landcover"  # bundled background vocabulary (prompts/background/NAME.txt)
_SYNTAX = "none, threshold:T, prompt, prompt:P or prompt:P+threshold:T (0 < P, T < 1)"


@dataclass(frozen=True)
class BackgroundPolicy:
    """A parsed background policy; ``prompt`` / ``threshold`` are None when that rule is off."""

    prompt: float | None = None  # background-vocabulary probability threshold P
    threshold: float | None = None  # asked-class top-probability threshold T

    @property
    def none(self) -> bool:
        return self.prompt is None and self.threshold is None


def _fraction(text: str, policy: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 < v < 1.0:
        raise DglrsisError(f"bad background policy {policy!r}: use {_SYNTAX}")
    return v


def parse_background(policy: str) -> BackgroundPolicy:
    """``none`` | ``threshold:T`` | ``prompt[:P]`` | ``prompt[:P]+threshold:T`` → a policy (0 < P, T < 1)."""
    text = str(policy).strip().lower()
    if text == "none":
        return BackgroundPolicy()
    rules: dict[str, float] = {}
    for term in text.split("+"):
        kind, sep, value = term.strip().partition(":")
        if kind not in ("prompt", "threshold") or kind in rules or (kind == "threshold" and not sep):
            raise DglrsisError(f"bad background policy {policy!r}: use {_SYNTAX}")
        rules[kind] = _fraction(value, policy) if sep else PROMPT_P
    return BackgroundPolicy(prompt=rules.get("prompt"), threshold=rules.get("threshold"))


@cache
def _bundled_vocab(name: str):
    from .vocab import parse_vocabulary_text

    path = resources.files("dglrsis.prompts").joinpath("background", f"{name}.txt")
    return parse_vocabulary_text(path.read_text(encoding="utf-8"), name)


def bundled_vocabularies() -> list[str]:
    """Names of the bundled background vocabularies."""
    folder = resources.files("dglrsis.prompts").joinpath("background")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))


def load_background_vocab(name_or_path: str = DEFAULT_VOCAB):
    """A background :class:`dglrsis.vocab.Vocabulary`: a bundled name (``landcover``) or a vocabulary file."""
    if name_or_path in bundled_vocabularies():
        return _bundled_vocab(name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise DglrsisError(
            f"no background vocabulary {name_or_path!r}: give a file or one of "
            f"{', '.join(bundled_vocabularies())}"
        )
    from .vocab import load_vocabulary

    return load_vocabulary(path)


def concepts_for(vocab, asked: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """(names, synonyms) of the background concepts sharing no name with the asked classes' synonyms."""
    taken = {s for group in asked for s in group}
    keep = [(n, s) for n, s in zip(vocab.names, vocab.synonyms, strict=True) if not taken & {n, *s}]
    return [n for n, _ in keep], [s for _, s in keep]


def joint_text(state, models, class_names: list[str], vocab):
    """(text embeddings, their class owners) of the ``K`` asked classes followed by the ``B``
    background concepts of ``vocab`` that collide with no asked class (:func:`joint_probabilities`)."""
    from dataclasses import replace

    import torch

    from .vocab import synonyms_for

    text, owner = models.text.embed(class_names, state.lvta)
    names, syns = concepts_for(vocab, [synonyms_for(n) for n in class_names])
    if not names:
        return text, owner
    bg_cfg = replace(state.lvta, knowledge=False, synonyms=True)
    bg, bg_owner = models.text.embed(names, bg_cfg, synonyms=syns)
    return torch.cat([text, bg]), torch.cat([owner, bg_owner + len(class_names)])


def joint_probabilities(state, models, class_names: list[str], vocab, masked: bool = True):
    """``N×(K+B)`` probabilities of each proposal of ``state`` over the ``K`` asked classes followed by
    the ``B`` background concepts of ``vocab`` that collide with no asked class.

    Softmax at CLIP's logit scale, each class or concept scoring the max over its synonyms; ``masked``:
    on the masked crops (else the context crops). ``B`` = 0 when every concept collides.
    """
    from .lvta import classify, logit_scale, masked_embeddings

    emb = masked_embeddings(state, models.clip) if masked else state.crop_emb
    text, owner = joint_text(state, models, class_names, vocab)
    return classify(emb, text, logit_scale(models.clip), owner)


def background_probability(state, models, class_names: list[str], vocab):
    """``N`` probabilities that each proposal of ``state`` is background (shape ``N``): the background
    concepts' share of :func:`joint_probabilities` on the masked crops, summed. Zero everywhere when
    every concept collides with an asked class."""
    return joint_probabilities(state, models, class_names, vocab)[:, len(class_names) :].sum(1)


def decide(state, models, class_names: list[str], policy: BackgroundPolicy, vocab) -> tuple:
    """(``N×K`` asked-class probabilities, ``N`` labels with −1 = background, ``N`` confidences)."""
    from .lvta import classify_proposals

    probs = classify_proposals(state, models, class_names)
    if len(probs) == 0:
        return probs, np.zeros(0, np.int64), np.zeros(0, np.float32)
    conf, lab = probs.max(dim=1)
    lab, conf = lab.numpy().astype(np.int64), conf.numpy().astype(np.float32)
    is_bg = np.zeros(len(lab), bool)
    if policy.threshold is not None:
        is_bg |= conf < policy.threshold
    if policy.prompt is not None:
        p_bg = background_probability(state, models, class_names, vocab).numpy()
        by_prompt = p_bg > policy.prompt
        is_bg |= by_prompt
        conf = np.where(by_prompt, p_bg, conf).astype(np.float32)
    lab[is_bg] = -1
    return probs, lab, conf
