"""k-means clustering (Rust engine)."""

__all__: list[str] = []
