"""Feature extraction and the on-disk feature cache.

Public API (used by the datamodule, the prediction path and the benchmarks):

- `FeatureConfig`: everything that changes the features (acoustic set, encoder, layers,
  word pooling).
- `feature_key(corpus, config) -> str`: the cache key for a prepared corpus.
- `extract(corpus, config, modalities, workers) -> str`: fills `cache/<corpus>/<key>/`
  (a no-op when complete, resumes when interrupted) and returns the key.
- `load(corpus, key, modalities) -> Features`: the cached features, fast and without pickle.
- `AcousticExtractor` and `LexicalEncoder`: the per-utterance functions both the cache and
  the inference path call, so features at inference equal those in training.
"""
