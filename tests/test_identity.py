"""Revocable identity: signing out one token or all of them, and device links."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import timedelta

import jwt
import pytest

from dungeon.api.schemas import RedeemLink
from dungeon.users import ALPHABET, CODE_INPUT, code_digest, normalise_code
from tests.conftest import SIGNING_KEY
from tests.fakes import FakeClock, FakeNow
from tests.faults import FaultInjector
from tests.test_error_shape import assert_error_shape

PLAIN = {"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "local"}
SIGNED_OUT = "The bearer token was signed out; get a new one."
SIGNED_OUT_EVERYWHERE = "The bearer token was signed out on every device; get a new one."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_guest(client) -> dict:
    response = client.post("/api/auth/guest")
    assert response.status_code == 201
    return response.get_json()


def link_code(client, headers) -> str:
    response = client.post("/api/auth/link", headers=headers)
    assert response.status_code == 201, response.get_data(True)
    return response.get_json()["code"]


def second_device(client, headers) -> dict:
    """Sign a second device in as the user of ``headers``; return its answer."""
    response = client.post("/api/auth/link/redeem", json={"code": link_code(client, headers)})
    assert response.status_code == 201, response.get_data(True)
    return response.get_json()


def games_status(client, headers) -> int:
    return client.get("/api/games", headers=headers).status_code


def refused(response, message: str) -> None:
    assert assert_error_shape(response, 401, "unauthorized")["error"]["message"] == message


@pytest.fixture
def app(make_app):
    return make_app(PLAIN)


# --- logout ----------------------------------------------------------------------

def test_logout_ends_this_token_and_no_other(client):
    guest = new_guest(client)
    phone = bearer(guest["token"])
    laptop = bearer(second_device(client, phone)["token"])
    stranger = bearer(new_guest(client)["token"])
    assert client.post("/api/auth/logout", headers=phone).status_code == 204
    refused(client.get("/api/games", headers=phone), SIGNED_OUT)
    refused(client.post("/api/auth/link", headers=phone), SIGNED_OUT)
    assert games_status(client, laptop) == 200  # the same user's other token
    assert games_status(client, stranger) == 200


def test_logging_out_twice_answers_like_once(client):
    headers = bearer(new_guest(client)["token"])
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert client.post("/api/auth/logout", headers=headers).status_code == 204  # a safe retry
    refused(client.get("/api/games", headers=headers), SIGNED_OUT)


def test_a_logout_is_kept_until_the_token_would_have_expired(app, client):
    guest = new_guest(client)
    assert client.post("/api/auth/logout", headers=bearer(guest["token"])).status_code == 204
    record = app.extensions["dungeon"].db["revoked_tokens"].find_one()
    assert record["user_id"] == guest["user_id"]
    claims = jwt.decode(guest["token"], options={"verify_signature": False})
    assert record["_id"] == claims["jti"]
    assert record["expires_at"].timestamp() == claims["exp"]  # then the TTL index drops it
    indexes = app.extensions["dungeon"].db["revoked_tokens"].index_information()
    assert indexes["expiry_ttl"]["expireAfterSeconds"] == 0


# --- logout everywhere ------------------------------------------------------------

def test_logout_everywhere_ends_every_token_of_the_user(app, client):
    guest = new_guest(client)
    phone = bearer(guest["token"])
    laptop = bearer(second_device(client, phone)["token"])
    waiting = link_code(client, phone)  # made before: it ends too
    stranger = bearer(new_guest(client)["token"])
    assert client.post("/api/auth/logout-everywhere", headers=laptop).status_code == 204
    refused(client.get("/api/games", headers=phone), SIGNED_OUT_EVERYWHERE)
    refused(client.get("/api/games", headers=laptop), SIGNED_OUT_EVERYWHERE)
    assert_error_shape(client.post("/api/auth/link/redeem", json={"code": waiting}), 404,
                       "link_code_invalid")
    assert games_status(client, stranger) == 200
    user = app.extensions["dungeon"].db["users"].find_one({"_id": guest["user_id"]})
    assert user["generation"] == 1


def test_logout_everywhere_repeated_ends_nothing_more(app, client):
    guest = new_guest(client)
    headers = bearer(guest["token"])
    for _ in range(3):  # a retry after a lost answer, twice
        assert client.post("/api/auth/logout-everywhere", headers=headers).status_code == 204
    user = app.extensions["dungeon"].db["users"].find_one({"_id": guest["user_id"]})
    assert user["generation"] == 1


def test_a_token_signed_out_on_its_own_cannot_end_the_others(client):
    phone = bearer(new_guest(client)["token"])
    laptop = bearer(second_device(client, phone)["token"])
    assert client.post("/api/auth/logout", headers=phone).status_code == 204
    refused(client.post("/api/auth/logout-everywhere", headers=phone), SIGNED_OUT)
    assert games_status(client, laptop) == 200


def test_a_token_ended_everywhere_cannot_link_a_device(client):
    phone = bearer(new_guest(client)["token"])
    laptop = bearer(second_device(client, phone)["token"])
    assert client.post("/api/auth/logout-everywhere", headers=laptop).status_code == 204
    refused(client.post("/api/auth/link", headers=phone), SIGNED_OUT_EVERYWHERE)


def test_tokens_issued_before_generations_keep_working_and_can_be_signed_out(app, client):
    now = int(time.time())
    user_id = "u_" + "L" * 22
    legacy = [jwt.encode({"sub": user_id, "iat": now - i, "exp": now + 3600, "typ": "guest"},
                         SIGNING_KEY, algorithm="HS256") for i in range(2)]
    assert [games_status(client, bearer(token)) for token in legacy] == [200, 200]
    assert client.post("/api/auth/logout", headers=bearer(legacy[0])).status_code == 204
    refused(client.get("/api/games", headers=bearer(legacy[0])), SIGNED_OUT)
    assert games_status(client, bearer(legacy[1])) == 200
    assert client.post("/api/auth/logout-everywhere",
                       headers=bearer(legacy[1])).status_code == 204
    refused(client.get("/api/games", headers=bearer(legacy[1])), SIGNED_OUT_EVERYWHERE)
    # No record existed for this user: signing out everywhere made it.
    assert app.extensions["dungeon"].db["users"].find_one({"_id": user_id})["generation"] == 1


def test_a_token_with_a_forged_generation_claim_is_not_valid(client):
    now = int(time.time())
    for gen in (-1, "1", True):
        token = jwt.encode({"sub": "u_" + "G" * 22, "iat": now, "exp": now + 60, "gen": gen},
                           SIGNING_KEY, algorithm="HS256")
        refused(client.get("/api/games", headers=bearer(token)), "The bearer token is not valid.")


# --- the revocation cache and its bound ---------------------------------------------

@pytest.fixture
def two_processes(make_app):
    """Two apps on one store, as two workers are, each with its own caches and clock."""
    clocks = [FakeClock(), FakeClock()]
    apps = [make_app({**PLAIN, "AUTH_CACHE_SECONDS": 30}, auth_options={"timer": clock})
            for clock in clocks]
    return [app.test_client() for app in apps], clocks


@pytest.mark.parametrize("route", ["/api/auth/logout", "/api/auth/logout-everywhere"])
def test_a_sign_out_elsewhere_takes_effect_within_the_cache_seconds(two_processes, route):
    (here, there), (_, there_clock) = two_processes
    headers = bearer(new_guest(here)["token"])
    assert games_status(there, headers) == 200  # the other process now remembers the token
    assert here.post(route, headers=headers).status_code == 204
    assert games_status(here, headers) == 401  # at once where it was done
    there_clock.advance(29)
    assert games_status(there, headers) == 200  # still remembered there ...
    there_clock.advance(1.5)
    assert games_status(there, headers) == 401  # ... and never past AUTH_CACHE_SECONDS


def test_the_verified_signature_cache_does_not_stretch_the_bound(make_app):
    # Signatures are remembered for 60 s; with a 5 s revocation cache a token
    # signed out elsewhere still stops working after 5 s.
    clocks = [FakeClock(), FakeClock()]
    here, there = (make_app({**PLAIN, "AUTH_CACHE_SECONDS": 5},
                            auth_options={"timer": clock}).test_client() for clock in clocks)
    headers = bearer(new_guest(here)["token"])
    assert games_status(there, headers) == 200
    assert here.post("/api/auth/logout", headers=headers).status_code == 204
    clocks[1].advance(5.5)
    assert games_status(there, headers) == 401


def test_with_no_cache_every_request_reads_the_store(make_app):
    here, there = (make_app({**PLAIN, "AUTH_CACHE_SECONDS": 0}).test_client() for _ in range(2))
    headers = bearer(new_guest(here)["token"])
    assert games_status(there, headers) == 200
    assert here.post("/api/auth/logout", headers=headers).status_code == 204
    assert games_status(there, headers) == 401


def test_the_common_case_reads_nothing_about_revocation(make_app, monkeypatch):
    here, there = (make_app(PLAIN).test_client() for _ in range(2))
    headers = bearer(new_guest(here)["token"])
    injector = FaultInjector(monkeypatch)
    for _ in range(5):
        assert games_status(here, headers) == 200
        assert games_status(there, headers) == 200
    reads = [(call.collection, call.operation) for call in injector.calls
             if call.collection in ("users", "revoked_tokens")]
    # The process that issued the token knows it is live; the other reads the
    # user's generation and the token's record once, then neither again.
    assert sorted(reads) == [("revoked_tokens", "find_one"), ("users", "find_one")]


def test_a_signed_out_token_sent_again_and_again_reads_nothing(client, monkeypatch):
    headers = bearer(new_guest(client)["token"])
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    injector = FaultInjector(monkeypatch)
    for _ in range(5):
        assert games_status(client, headers) == 401
    assert not [call for call in injector.calls
                if call.collection in ("users", "revoked_tokens")]


def test_a_check_that_read_before_a_sign_out_does_not_undo_it(make_app):
    here, there = (make_app(PLAIN) for _ in range(2))
    headers = bearer(new_guest(here.test_client())["token"])
    users = there.extensions["dungeon"].users
    read = users.revoked.find_one

    def sign_out_meanwhile(*args, **kwargs):
        found = read(*args, **kwargs)  # not signed out yet, as this check reads it ...
        claims = there.extensions["dungeon"].signer.claims(headers["Authorization"][7:])
        users.sign_out(claims)  # ... and a sign-out in this process lands before it is kept
        return found

    users.revoked.find_one = sign_out_meanwhile
    client = there.test_client()
    assert games_status(client, headers) == 200  # the check that read first
    users.revoked.find_one = read
    assert games_status(client, headers) == 401  # the sign-out was kept, not the old read


def test_a_store_that_cannot_say_is_503_never_a_pass(make_app, monkeypatch):
    issuer, client = (make_app(PLAIN).test_client() for _ in range(2))
    headers = bearer(new_guest(issuer)["token"])  # a token this process has not seen
    injector = FaultInjector(monkeypatch)
    injector.arm("users", "find_one", "before", "NotPrimaryError")
    response = client.get("/api/games", headers=headers)
    assert_error_shape(response, 503, "store_unavailable")
    assert response.headers["Retry-After"] == "2"
    assert games_status(client, headers) == 200  # nothing failed was remembered


# --- failures while writing ---------------------------------------------------------

def test_a_guest_whose_record_was_not_written_is_still_a_guest(app, client, monkeypatch):
    injector = FaultInjector(monkeypatch)
    injector.arm("users", "insert_one", "before", "AutoReconnect")
    guest = new_guest(client)
    assert injector.fired
    assert app.extensions["dungeon"].db["users"].find_one({"_id": guest["user_id"]}) is None
    headers = bearer(guest["token"])
    assert games_status(client, headers) == 200  # no record: generation 0
    assert client.post("/api/auth/logout-everywhere", headers=headers).status_code == 204
    assert games_status(client, headers) == 401


def test_a_guest_record_whose_answer_was_lost_is_found_by_one_read(app, client, monkeypatch):
    injector = FaultInjector(monkeypatch)
    injector.arm("users", "insert_one", "after", "WTimeoutError")
    guest = new_guest(client)
    assert injector.fired
    user = app.extensions["dungeon"].db["users"].find_one({"_id": guest["user_id"]})
    assert user["generation"] == 0 and user["created_at"] is not None


def test_a_logout_whose_answer_was_lost_is_safe_to_retry(client, monkeypatch):
    headers = bearer(new_guest(client)["token"])
    injector = FaultInjector(monkeypatch)
    injector.arm("revoked_tokens", "update_one", "after", "WTimeoutError")
    assert_error_shape(client.post("/api/auth/logout", headers=headers), 503, "store_unavailable")
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert games_status(client, headers) == 401


def test_a_logout_everywhere_whose_answer_was_lost_bumps_once(app, client, monkeypatch):
    guest = new_guest(client)
    headers = bearer(guest["token"])
    injector = FaultInjector(monkeypatch)
    injector.arm("users", "find_one_and_update", "after", "AutoReconnect")
    response = client.post("/api/auth/logout-everywhere", headers=headers)
    assert_error_shape(response, 503, "store_unavailable")
    assert client.post("/api/auth/logout-everywhere", headers=headers).status_code == 204
    injector.enabled = False
    assert app.extensions["dungeon"].db["users"].find_one(
        {"_id": guest["user_id"]})["generation"] == 1


@pytest.mark.parametrize(("when", "status"), [("after", 201), ("before", 503)])
def test_a_link_code_whose_write_failed_is_settled_by_one_read(client, monkeypatch, when, status):
    headers = bearer(new_guest(client)["token"])
    injector = FaultInjector(monkeypatch)
    injector.arm("link_codes", "insert_one", when, "NotPrimaryError")
    response = client.post("/api/auth/link", headers=headers)
    assert response.status_code == status
    if status == 201:  # it was stored: the code works
        injector.enabled = False
        redeemed = client.post("/api/auth/link/redeem", json={"code": response.json["code"]})
        assert redeemed.status_code == 201
    else:
        body = assert_error_shape(response, 503, "store_unavailable")
        assert body["error"]["message"] == "No link code was made. Try again."


# --- device links -----------------------------------------------------------------

@pytest.fixture
def now():
    return FakeNow()


@pytest.fixture
def linked_app(make_app, now):
    return make_app(PLAIN, auth_options={"now": now})


def test_a_link_code_is_eight_unambiguous_characters_for_ten_minutes(linked_app, now):
    client = linked_app.test_client()
    headers = bearer(new_guest(client)["token"])
    response = client.post("/api/auth/link", headers=headers)
    assert response.status_code == 201
    body = response.get_json()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{8}", body["code"])
    assert set(ALPHABET).isdisjoint("ILOU") and len(ALPHABET) == 32
    expected = (now() + timedelta(minutes=10)).replace(microsecond=0)
    assert body["expires_at"] == expected.isoformat().replace("+00:00", "Z")
    assert response.headers["Cache-Control"] == "no-store"


def test_saved_games_follow_the_player_to_the_linked_device(client):
    guest = new_guest(client)
    phone = bearer(guest["token"])
    created = client.post("/api/games", headers=phone, json={"genre": "fantasy",
                                                             "style": "comic"})
    assert created.status_code == 201
    laptop_answer = second_device(client, phone)
    assert set(laptop_answer) == {"token", "token_type", "user_id", "expires_at"}
    assert laptop_answer["user_id"] == guest["user_id"]
    assert laptop_answer["token_type"] == "Bearer"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", laptop_answer["expires_at"])
    laptop = bearer(laptop_answer["token"])
    game_id = created.json["game"]["id"]
    assert [g["id"] for g in client.get("/api/games", headers=laptop).json["games"]] == [game_id]
    played = client.post(f"/api/games/{game_id}/actions", headers=laptop,
                         json={"action": "I wave at my phone"})
    assert played.status_code == 201


def test_a_link_code_used_twice_gives_one_token(client):
    headers = bearer(new_guest(client)["token"])
    code = link_code(client, headers)
    assert client.post("/api/auth/link/redeem", json={"code": code}).status_code == 201
    again = client.post("/api/auth/link/redeem", json={"code": code})
    body = assert_error_shape(again, 404, "link_code_invalid")
    assert "used or expired" in body["error"]["message"]


def test_redeeming_one_code_at_once_from_many_devices_gives_one_token(client):
    headers = bearer(new_guest(client)["token"])
    code = link_code(client, headers)
    statuses: list[int] = []
    start = threading.Barrier(8)

    def redeem():
        start.wait()
        statuses.append(client.post("/api/auth/link/redeem", json={"code": code}).status_code)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [404] * 7


def test_an_expired_code_is_refused_like_an_unknown_one(linked_app, now):
    client = linked_app.test_client()
    headers = bearer(new_guest(client)["token"])
    fresh, stale = link_code(client, headers), link_code(client, headers)
    now.advance(599)
    assert client.post("/api/auth/link/redeem", json={"code": fresh}).status_code == 201
    now.advance(2)  # 10 minutes and a second
    expired = client.post("/api/auth/link/redeem", json={"code": stale})
    unknown = client.post("/api/auth/link/redeem", json={"code": "ZZZZZZZZ"})
    assert assert_error_shape(expired, 404, "link_code_invalid")["error"] == \
        assert_error_shape(unknown, 404, "link_code_invalid")["error"]


def test_a_code_may_be_typed_in_any_case_with_dashes_or_spaces(client):
    headers = bearer(new_guest(client)["token"])
    code = link_code(client, headers)
    typed = f" {code[:4].lower()}-{code[4:]} "
    assert client.post("/api/auth/link/redeem", json={"code": typed}).status_code == 201


def test_lookalike_letters_read_as_the_digits_they_look_like():
    assert normalise_code("oi1l-0000") == "01110000"
    assert normalise_code("abcd efgh") == "ABCDEFGH"
    assert normalise_code("UUUUUUUU") is None  # U is in no code
    assert normalise_code("ABC") is None and normalise_code("ABCDEFGHJ") is None
    assert normalise_code("ABCD_EFGH") is None


def test_the_request_model_says_what_the_store_accepts():
    assert RedeemLink.model_json_schema()["properties"]["code"]["pattern"] == CODE_INPUT


@pytest.mark.parametrize("body", [{"code": "ABC"}, {"code": "ABCD!EFG"}, {"code": 12345678},
                                  {"code": "A" * 40}, {}, {"code": "ABCDEFGH", "user": "x"}])
def test_a_code_of_the_wrong_shape_is_refused_before_any_lookup(client, body):
    assert_error_shape(client.post("/api/auth/link/redeem", json=body), 422,
                       "validation_failed")


def test_guessing_codes_gets_the_same_answer_and_is_rate_limited(make_app):
    client = make_app({**PLAIN, "RATE_LIMIT_REDEEM": "3/hour"}).test_client()
    headers = bearer(new_guest(client)["token"])
    real = link_code(client, headers)
    guesses = [code for code in ("00000000", "ZZZZZZZZ", "7K3M9QXD", "ABCDEFGH")
               if code != real][:3]
    answers = [client.post("/api/auth/link/redeem", json={"code": code}) for code in guesses]
    assert {assert_error_shape(a, 404, "link_code_invalid")["error"]["message"]
            for a in answers} == {answers[0].json["error"]["message"]}
    # The limit counts every try, right or wrong: the real code waits too.
    blocked = client.post("/api/auth/link/redeem", json={"code": real})
    body = assert_error_shape(blocked, 429, "rate_limited")
    assert body["error"]["details"]["scope"] == "redeem" and blocked.headers["Retry-After"]


def test_link_codes_are_rate_limited_per_user(make_app):
    client = make_app({**PLAIN, "RATE_LIMIT_LINKS": "2/hour"}).test_client()
    headers = bearer(new_guest(client)["token"])
    assert [client.post("/api/auth/link", headers=headers).status_code
            for _ in range(3)] == [201, 201, 429]
    other = bearer(new_guest(client)["token"])
    assert client.post("/api/auth/link", headers=other).status_code == 201


def test_the_store_never_holds_a_usable_code(app, client):
    headers = bearer(new_guest(client)["token"])
    code = link_code(client, headers)
    stored = app.extensions["dungeon"].db["link_codes"].find_one()
    users = app.extensions["dungeon"].users
    assert stored["_id"] == code_digest(code, users.secret)
    # Keyed: a plain hash of the code, which a database reader could reverse, is not stored.
    assert stored["_id"] != hashlib.sha256(code.encode()).hexdigest()
    assert code not in str(stored)
    indexes = app.extensions["dungeon"].db["link_codes"].index_information()
    assert indexes["expiry_ttl"]["expireAfterSeconds"] == 0


@pytest.mark.parametrize("route", ["/api/auth/link", "/api/auth/logout",
                                   "/api/auth/logout-everywhere"])
@pytest.mark.parametrize("header", [None, "Bearer not.a.jwt"])
def test_identity_routes_need_a_valid_token(client, route, header):
    headers = {"Authorization": header} if header else {}
    assert_error_shape(client.post(route, headers=headers), 401, "unauthorized")
