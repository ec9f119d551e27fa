"""Languages each service accepts (ISO 639-1), as the subnet's miners serve them."""

from __future__ import annotations

# Whisper-class models transcribe far more languages than speech models speak; summaries follow the LLM.
# fmt: off
TRANSCRIPTION = frozenset({
    "af", "ar", "az", "be", "bg", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "fa", "fi",
    "fr", "gl", "he", "hi", "hr", "hu", "hy", "id", "is", "it", "ja", "kk", "kn", "ko", "lt", "lv", "mi",
    "mk", "mr", "ms", "ne", "nl", "no", "pl", "pt", "ro", "ru", "sk", "sl", "sr", "sv", "sw", "ta", "th",
    "tl", "tr", "uk", "ur", "vi", "zh",
})
TTS = frozenset({
    "ar", "cs", "de", "en", "es", "fr", "hi", "hu", "it", "ja", "ko", "nl", "pl", "pt", "ru", "tr", "zh",
})
SUMMARIZATION = frozenset({
    "ar", "de", "en", "es", "fr", "hi", "it", "ja", "ko", "nl", "pl", "pt", "ru", "tr", "uk", "zh",
})
# fmt: on
LANGUAGES = {"transcription": TRANSCRIPTION, "tts": TTS, "summarization": SUMMARIZATION}
