"""Model parts (encoders, poolings, fusions, heads) and the one LightningModule."""
