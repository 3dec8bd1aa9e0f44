"""Exact k-nearest neighbours and k-NN membership-inference features (Rust engine)."""

__all__: list[str] = []
