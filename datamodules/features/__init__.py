"""Feature extraction and the on-disk feature cache.

Public API (used by the datamodule, the prediction path and the benchmarks):

- `FeatureConfig`: everything that changes the features (acoustic set, encoder, layers,
  word pooling).
- `feature_key(corpus, config) -> str`: the cache key for a prepared corpus.
- `extract(corpus, config, modalities, workers) -> ExtractReport`: fills
  `cache/<corpus>/<key>/` (a no-op when complete, resumes when interrupted); the report holds
  the key and the shards computed, linked and rebuilt. `write_features` writes a cache from
  given arrays (generated corpora). `corpus` is a name or a `PreparedCorpus`.
- `load(corpus, key, modalities) -> Features`: the cached features, fast and without pickle.
- `AcousticExtractor` and `LexicalEncoder`: the per-utterance functions both the cache and
  the inference path call, so features at inference equal those in training.
"""

from datamodules.features.acoustic import ACOUSTIC_DIM, AcousticError, AcousticExtractor
from datamodules.features.config import (
    FRAME_STEP_S,
    FeatureConfig,
    FeatureError,
    feature_key,
    feature_key_for_table,
)
from datamodules.features.lexical import LexicalEncoder, resolve_encoder, word_spans
from datamodules.features.store import (
    ExtractReport,
    Features,
    extract,
    load,
    load_table_features,
    write_features,
)

__all__ = [
    "ACOUSTIC_DIM",
    "FRAME_STEP_S",
    "AcousticError",
    "AcousticExtractor",
    "FeatureConfig",
    "FeatureError",
    "ExtractReport",
    "Features",
    "LexicalEncoder",
    "extract",
    "feature_key",
    "feature_key_for_table",
    "load",
    "load_table_features",
    "resolve_encoder",
    "word_spans",
    "write_features",
]
