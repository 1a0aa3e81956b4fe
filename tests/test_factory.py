import pytest

from dungeon import create_app
from dungeon.errors import ConfigError


def test_defaults_make_a_working_app_without_mongodb_or_key():
    app = create_app({"LOAD_ENTRYPOINTS": False})
    assert not app.testing
    assert app.config["IMAGE_PROVIDERS"] == ["gpt-image-2", "placeholder"]
    assert app.test_client().get("/healthz").status_code == 200


def test_state_lives_in_app_extensions_per_app(make_app):
    first, second = make_app(), make_app()
    assert first.extensions["dungeon"] is not second.extensions["dungeon"]
    assert first.extensions["dungeon"].plugin_manager is not \
        second.extensions["dungeon"].plugin_manager


def test_environment_overrides_defaults(monkeypatch, make_app):
    monkeypatch.setenv("DUNGEON_IMAGE_RETRIES", "5")
    monkeypatch.setenv("DUNGEON_IMAGE_PROVIDERS", "dall-e-3, placeholder")
    monkeypatch.setenv("DUNGEON_BREAKER_RESET_SECONDS", "2.5")
    app = make_app()
    assert app.config["IMAGE_RETRIES"] == 5
    assert app.config["IMAGE_PROVIDERS"] == ["dall-e-3", "placeholder"]
    assert app.config["BREAKER_RESET_SECONDS"] == 2.5


def test_test_mapping_overrides_environment(monkeypatch, make_app):
    monkeypatch.setenv("DUNGEON_IMAGE_RETRIES", "5")
    assert make_app({"IMAGE_RETRIES": 1}).config["IMAGE_RETRIES"] == 1


def test_openai_variables_are_read_unprefixed(monkeypatch, make_app):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    app = make_app()
    assert app.config["OPENAI_API_KEY"] == "sk-from-env"
    assert app.config["OPENAI_BASE_URL"] == "http://127.0.0.1:9999/v1"


@pytest.mark.parametrize(("config", "fragment"), [
    ({"IMAGE_PROVIDERS": "gpt-image-2,midjourney"},
     "IMAGE_PROVIDERS: unknown provider(s) midjourney"),
    ({"IMAGE_READ_TIMEOUT": -1}, "IMAGE_READ_TIMEOUT: must be >= 0.1"),
    ({"IMAGE_PROVIDERS": "gpt-image-2,,placeholder"}, "IMAGE_PROVIDERS: malformed"),
    ({"IMAGE_PROVIDERS": "placeholder,placeholder"}, "listed twice"),
    ({"IMAGE_RETRIES": "two"}, "IMAGE_RETRIES: must be a whole number"),
    ({"LOAD_ENTRYPOINTS": "maybe"}, "LOAD_ENTRYPOINTS: must be true or false"),
    ({"IMAGE_MODERATION": "strict"}, "IMAGE_MODERATION: must be one of off, local, openai"),
    ({"ENV": "production"}, "SECRET_KEY: required when ENV is production"),
    ({"ENV": "production", "SECRET_KEY": "s" * 32}, "MONGO_URI: required when ENV is production"),
])
def test_invalid_configuration_names_the_setting_and_refuses_to_start(config, fragment):
    with pytest.raises(ConfigError) as caught:
        create_app({"LOAD_ENTRYPOINTS": False, **config})
    assert fragment in str(caught.value)


def test_unknown_provider_error_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        create_app({"LOAD_ENTRYPOINTS": False, "IMAGE_PROVIDERS": "nope"})
    assert "known:" in str(caught.value) and "placeholder" in str(caught.value)


def test_numeric_looking_text_settings_stay_text(monkeypatch, make_app):
    monkeypatch.setenv("DUNGEON_MONGO_WRITE_CONCERN", "1")
    assert make_app().config["MONGO_WRITE_CONCERN"] == "1"


def test_a_broken_deny_pattern_stops_the_app(make_app):
    with pytest.raises(ConfigError, match="IMAGE_DENY_PATTERNS"):
        make_app({"IMAGE_DENY_PATTERNS": ["(unclosed"]})


def test_deny_patterns_with_commas_come_as_a_json_list(monkeypatch, make_app):
    monkeypatch.setenv("DUNGEON_IMAGE_DENY_PATTERNS", '["a{1,3}b", "gore"]')
    assert make_app().config["IMAGE_DENY_PATTERNS"] == ["a{1,3}b", "gore"]


def test_plugin_secrets_are_masked_in_logs_too(make_app, caplog):
    import logging

    from dungeon.logs import make_formatter

    make_app({"STABILITY_API_KEY": "sk-stability-very-secret"})
    record = logging.LogRecord("x", logging.ERROR, "", 0, "oops sk-stability-very-secret",
                               (), None)
    assert "very-secret" not in make_formatter("json").format(record)
