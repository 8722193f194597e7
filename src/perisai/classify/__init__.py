"""Is this personal data? Classification of sampled records and free text."""

from perisai.classify.engine import Classifier
from perisai.classify.mask import mask_email, mask_phone, mask_text
from perisai.classify.match import EntityMatch
from perisai.classify.profile import find_entities, profile_records, redact_text

__all__ = [
    "Classifier",
    "EntityMatch",
    "find_entities",
    "mask_email",
    "mask_phone",
    "mask_text",
    "profile_records",
    "redact_text",
]
