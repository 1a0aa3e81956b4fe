import importlib.metadata

import pytest

import dungeon
from dungeon.errors import ConfigError, DuplicateName, UnknownPlugin
from dungeon.plugins import DEFAULT_PLUGINS
from tests.fakes import FakeProvider, ProvidersPlugin


def test_builtins_are_registered_by_import_path(make_app):
    state = make_app().extensions["dungeon"]
    names = {name for name, _ in state.plugin_manager.list_name_plugin()}
    assert set(DEFAULT_PLUGINS) <= names
    assert {"placeholder", "gpt-image-2", "gpt-image-1", "dall-e-3"} <= set(state.providers)


def test_modules_named_in_plugins_setting_are_loaded(monkeypatch, make_app):
    monkeypatch.setenv("DUNGEON_PLUGINS", "tests.plugin_samples")
    app = make_app({"IMAGE_PROVIDERS": "sample,placeholder"})
    assert "sample" in app.extensions["dungeon"].providers


def test_unimportable_plugin_module_is_a_startup_error(make_app):
    with pytest.raises(UnknownPlugin, match="tests.no_such_plugin"):
        make_app({"PLUGINS": "tests.no_such_plugin"})


def test_misspelled_hookimpl_fails_loudly(make_app):
    with pytest.raises(ConfigError, match="register_image_provider"):
        make_app({"PLUGINS": "tests.plugin_misspelled"})


def test_duplicate_provider_names_name_both_plugins(make_app):
    first = ProvidersPlugin(FakeProvider("twin"), name="first-plugin")
    second = ProvidersPlugin(FakeProvider("twin"), name="second-plugin")
    with pytest.raises(DuplicateName) as caught:
        make_app(plugins=[first, second])
    assert "first-plugin" in str(caught.value) and "second-plugin" in str(caught.value)


def test_blocked_builtin_placeholder_is_reported(make_app):
    with pytest.raises(ConfigError, match="placeholder"):
        make_app({"DISABLED_PLUGINS": "providers.placeholder", "IMAGE_PROVIDERS": "gpt-image-2"})


class _FakeDistribution:
    entry_points = [importlib.metadata.EntryPoint("sample", "tests.plugin_samples", "dungeon")]
    metadata = {"name": "dungeon-sample"}
    _normalized_name = "dungeon_sample"
    version = "1.0"


@pytest.fixture
def installed_sample(monkeypatch):
    """Make the sample plugin look installed under the ``dungeon`` entry-point group."""
    installed = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions",
                        lambda **kwargs: [*installed(**kwargs), _FakeDistribution()])


def test_entry_point_plugins_load_when_enabled(installed_sample, make_app):
    app = make_app({"LOAD_ENTRYPOINTS": True, "IMAGE_PROVIDERS": "sample,placeholder"})
    assert "sample" in app.extensions["dungeon"].providers


def test_entry_point_plugins_stay_out_when_disabled(installed_sample, make_app):
    app = make_app({"LOAD_ENTRYPOINTS": False, "IMAGE_PROVIDERS": "placeholder"})
    assert "sample" not in app.extensions["dungeon"].providers


@pytest.mark.parametrize("order", [["b", "a"], ["a", "b"]])
def test_configuration_not_registration_decides_the_order(make_app, order):
    a, b = FakeProvider("a"), FakeProvider("b")
    for provider in (a, b):
        provider.enqueue(*[ConnectionRefusedProviderError() for _ in range(3)])
    calls = []
    a.generate = _recording(a.generate, calls, "a")
    b.generate = _recording(b.generate, calls, "b")
    app = make_app({"IMAGE_PROVIDERS": [*order, "placeholder"], "IMAGE_RETRIES": 0},
                   plugins=[ProvidersPlugin(a, name="pa"), ProvidersPlugin(b, name="pb")])
    app.extensions["dungeon"].images.generate(_request())
    assert calls == order


def test_every_hook_has_a_documented_spec_and_a_test():
    from dungeon import hookspecs

    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert hooks == ["register_image_providers", "register_narrators"]
    for name in hooks:
        assert getattr(hookspecs, name).__doc__
        assert f"test_hook_{name}" in globals(), f"no test for hook {name}"


def test_hook_register_image_providers(make_app):
    provider = FakeProvider("mine")
    app = make_app({"IMAGE_PROVIDERS": "mine,placeholder"}, providers=[provider])
    assert app.extensions["dungeon"].providers["mine"] is provider


def test_hook_register_narrators():
    from dungeon.plugins import collect, make_plugin_manager
    from dungeon.settings import defaults

    class Narrator:
        name = "bard"

    class Plugin:
        __name__ = "narrator-plugin"

        @dungeon.hookimpl
        def register_narrators(self, register, config):
            register(Narrator())

    config = {**defaults(), "LOAD_ENTRYPOINTS": False}
    pm = make_plugin_manager(config, [Plugin()])
    assert "bard" in collect(pm, "register_narrators", config, "narrator")


# --- helpers ---

def ConnectionRefusedProviderError():  # noqa: N802 - reads as the error it makes
    from dungeon.errors import ProviderUnavailable

    return ProviderUnavailable("connection refused")


def _recording(generate, calls, name):
    def wrapper(request, timeout):
        calls.append(name)
        return generate(request, timeout)

    return wrapper


def _request():
    from dungeon.images.types import ImageRequest

    return ImageRequest("a dark forest", "fantasy", "painterly")
