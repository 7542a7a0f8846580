from transferlm.models.resolve import BUNDLED, ResolvedModel, bundled_hint, resolve_model

__all__ = ["BUNDLED", "ResolvedModel", "bundled_hint", "resolve_model"]
