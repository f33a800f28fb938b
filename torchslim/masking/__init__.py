"""How masks attach to modules (in-place, hook-based; module classes and state_dict unchanged)."""
from torchslim.masking.masks import (
    MaskKeeper, apply_masks, attach_masks, detach_masks, get_masks, mask_name, masked_targets, strip_masks,
)

__all__ = [
    "MaskKeeper", "apply_masks", "attach_masks", "detach_masks", "get_masks", "mask_name", "masked_targets",
    "strip_masks",
]
