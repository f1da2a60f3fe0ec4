"""Corpus readers, feature extraction and caching, splits and the LightningDataModule."""
