"""The serving core: verified models in, predictions out (numpy only; knows nothing of HTTP)."""
