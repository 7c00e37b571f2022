"""pipeline."""

# compute first: it imports device_profiles at its end, which needs compute's ProfileCost, so
# importing device_profiles on its own must not come first.
from diffstream.pipeline import compute as _compute  # noqa: F401
