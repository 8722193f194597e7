"""Is this personal data? Classification of sampled records and free text."""

from perisai.classify.mask import mask_email, mask_phone, mask_text
from perisai.classify.profile import EntityMatch, find_entities, profile_records, redact_text

__all__ = [
    "EntityMatch",
    "find_entities",
    "mask_email",
    "mask_phone",
    "mask_text",
    "profile_records",
    "redact_text",
]
