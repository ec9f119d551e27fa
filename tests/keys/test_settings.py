import pytest

from app.settings import SettingsError


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PYLON_KEYS_SYNC_INTERVAL", "0"),
        ("PYLON_KEYS_USAGE_BATCH_SIZE", "0"),
        ("PYLON_KEYS_RATE_WINDOW", "abc"),
        ("PYLON_EPISTULA_WINDOW", "-1"),
        ("PYLON_EPISTULA_MIN_STAKE", "-5"),
        ("PYLON_EPISTULA_HOTKEYS", "5Fabc:lots"),
        ("PYLON_EPISTULA_REPLAY_CAPACITY", "0"),
    ],
)
def test_bad_values_name_the_variable(settings_factory, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings_factory(**{name: value})


def test_epistula_settings_parse(settings_factory) -> None:
    settings = settings_factory(
        PYLON_EPISTULA_HOTKEY="5Own", PYLON_EPISTULA_NETUID="12", PYLON_EPISTULA_HOTKEYS="5A,5B:10"
    )
    assert settings.epistula.netuid == 12
    assert settings.epistula.hotkeys == ["5A", "5B:10"]
    assert settings_factory().epistula.netuid is None
