"""Experiment configs: one ml_collections file per experiment."""
