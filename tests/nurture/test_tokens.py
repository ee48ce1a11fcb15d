"""Signed unsubscribe tokens: the lead comes back out, forgeries and other keys do not verify, rotation works."""

import pytest

from nurture.tokens import SecretError, check_secret, sign, unsubscribe_lead, unsubscribe_token, verify

OLD = "old-secret-0123456789abcdef0123456789"
NEW = "new-secret-0123456789abcdef0123456789"


def test_a_token_names_its_lead_and_verifies_only_with_its_key() -> None:
    token = unsubscribe_token("LD-42/é", NEW)
    assert unsubscribe_lead(token, [NEW]) == "LD-42/é"
    assert unsubscribe_lead(token, [OLD]) is None
    tag = token.partition(".")[2]
    other = unsubscribe_token("LD-43", NEW).partition(".")[0]
    assert unsubscribe_lead(f"{other}.{tag}", [NEW]) is None  # the tag of one lead does not sign another
    assert unsubscribe_lead(token[:-2], [NEW]) is None
    assert unsubscribe_lead("not a token", [NEW]) is None


def test_a_rotated_key_keeps_old_links_working_through_the_grace_period() -> None:
    before = unsubscribe_token("LD-1", OLD)
    assert unsubscribe_lead(before, [NEW, OLD]) == "LD-1"
    assert unsubscribe_lead(before, [NEW]) is None  # previous key dropped: grace period over


def test_a_token_of_another_purpose_does_not_unsubscribe() -> None:
    click = sign(NEW, "click", "LD-1")
    assert verify(click, [NEW], "click") == "LD-1"
    assert unsubscribe_lead(click, [NEW]) is None


@pytest.mark.parametrize(("secret", "problem"), [(None, "is not set"), ("short", "has 5 characters, fewer than 32")])
def test_a_missing_or_short_secret_is_refused(secret: str | None, problem: str) -> None:
    with pytest.raises(SecretError, match=problem):
        check_secret(secret)
    assert check_secret(NEW) == NEW
