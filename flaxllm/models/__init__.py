"""Model zoo: shared layers and the model families."""
