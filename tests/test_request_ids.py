import json
import logging

import pytest
from flask import Blueprint


def test_a_request_id_is_made_when_the_client_sends_none(client):
    rid = client.get("/healthz").headers["X-Request-ID"]
    assert len(rid) == 32 and rid.isalnum()


def test_a_safe_client_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42.x_y"})
    assert response.headers["X-Request-ID"] == "lb-7f3a:42.x_y"


@pytest.mark.parametrize("unsafe", ["a" * 129, "<script>", "id with spaces", "rid\u202e"])
def test_an_unsafe_client_request_id_is_replaced(client, unsafe):
    response = client.get("/healthz", headers={"X-Request-ID": unsafe})
    assert response.headers["X-Request-ID"] != unsafe


def test_every_log_line_of_a_request_carries_its_id(app, log_lines):
    bp = Blueprint("chatty", __name__)

    @bp.get("/chatty")
    def chatty():
        logging.getLogger("dungeon.test").info("first")
        logging.getLogger("werkzeug").warning("second")
        return {}

    app.register_blueprint(bp)
    app.test_client().get("/chatty", headers={"X-Request-ID": "trace-1"})
    lines = [json.loads(line) for line in log_lines()]
    ours = [line for line in lines if line["event"] in ("first", "second")]
    assert len(ours) == 2
    assert all(line["request_id"] == "trace-1" for line in ours)
