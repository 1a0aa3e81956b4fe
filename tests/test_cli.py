import json

from click.testing import CliRunner

from dungeon.cli import main


def test_check_config_prints_effective_config_with_secrets_masked(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef0123456789")
    monkeypatch.setenv("DUNGEON_LOAD_ENTRYPOINTS", "false")
    monkeypatch.setenv("DUNGEON_IMAGE_RETRIES", "4")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["OPENAI_API_KEY"] == "****"
    assert shown["IMAGE_RETRIES"] == 4
    assert "sk-live-abcdef0123456789" not in result.output


def test_check_config_exits_non_zero_on_invalid_config(monkeypatch):
    monkeypatch.setenv("DUNGEON_IMAGE_PROVIDERS", "no-such-provider")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 1  # as its help and the README say
    assert "exit 1" in CliRunner().invoke(main, ["check-config", "--help"]).output
    assert "IMAGE_PROVIDERS" in result.output


def test_providers_lists_configured_chain_and_api_listing(monkeypatch, requests_mock):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef0123456789")
    monkeypatch.setenv("DUNGEON_LOAD_ENTRYPOINTS", "false")
    monkeypatch.setenv("DUNGEON_IMAGE_PROVIDERS", "gpt-image-2,gpt-image-1.5,placeholder")
    requests_mock.get("https://api.openai.com/v1/models", json={"data": [
        {"id": "gpt-image-2", "shutdown_date": None},
        {"id": "gpt-image-1.5", "shutdown_date": "2026-12-01"}]})
    result = CliRunner().invoke(main, ["providers"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("gpt", "place"))]
    assert lines[0].startswith("gpt-image-2") and "listed=yes" in lines[0]
    assert "api_shutdown=2026-12-01" in lines[1]
    assert lines[2].startswith("placeholder")


def test_serve_runs_gunicorn_with_the_project_settings(monkeypatch):
    monkeypatch.setenv("DUNGEON_LOAD_ENTRYPOINTS", "false")
    called = {}
    monkeypatch.setattr("os.execvp", lambda path, args: called.update(path=path, args=args))
    result = CliRunner().invoke(main, ["serve", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert called["args"][1:] == ["-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf",
                                  "--workers", "3"]


def test_serve_refuses_an_invalid_configuration_before_starting(monkeypatch):
    monkeypatch.setenv("DUNGEON_IMAGE_RETRIES", "-1")
    monkeypatch.setattr("os.execvp", lambda *a: (_ for _ in ()).throw(AssertionError("ran")))
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1 and "IMAGE_RETRIES" in result.output


def test_collect_images_sweeps_what_nothing_uses(monkeypatch):
    import mongomock

    from dungeon import app as app_module

    client = mongomock.MongoClient(tz_aware=True)  # one store for both runs, as a server is
    original, made = app_module.create_app, []

    def create_app(*args, **kwargs):
        made.append(original(*args, mongo_client=client, **kwargs))
        return made[-1]

    monkeypatch.setenv("DUNGEON_LOAD_ENTRYPOINTS", "false")
    monkeypatch.setenv("DUNGEON_IMAGE_RETENTION_HOURS", "0")
    monkeypatch.setenv("DUNGEON_IMAGE_PROVIDERS", "placeholder")
    monkeypatch.setattr(app_module, "create_app", create_app)
    first = CliRunner().invoke(main, ["collect-images"])
    assert first.exit_code == 0, first.output
    state = made[-1].extensions["dungeon"]
    state.image_store.put(b"\x89PNG\r\n\x1a\nunused", "image/png")
    second = CliRunner().invoke(main, ["collect-images"])
    assert "collected 1 stored image" in second.output
    assert list(client["dungeon"]["images.files"].find()) == []
