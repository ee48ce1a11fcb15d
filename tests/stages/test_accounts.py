"""Account membership and the account model grammar, on frames and specs built by hand."""

import polars as pl
import pytest
from pydantic import ValidationError

from models.spec import Scale
from stages.account_spec import AccountModelSpec, AccountsSpec, default_free_mail_domains
from stages.accounts import membership

LEADS = pl.DataFrame(
    {
        "lead_key": [1, 2, 3, 4, 5, 6, 7],
        "email": ["a@Acme.com", "b@gmail.com", "c@gmail.com", "d@beta.io", "e@corp.example", None, "g@yahoo.fr"],
        "account_id": [None, None, "A2", "", None, None, " "],
    }
)
ACCOUNTS = pl.DataFrame({"account_id": ["A1", "A2"], "domain": ["acme.com", None]})


def test_free_mail_domains_form_no_account_and_an_account_id_wins() -> None:
    members = membership(LEADS, ACCOUNTS, AccountsSpec().free_mail)
    assert members.rows() == [
        (1, "A1", "domain"),  # acme.com is A1's domain
        (3, "A2", "account_id"),  # a gmail address, but the account is named
        (4, "beta.io", "domain"),  # no accounts row: the domain is the account
        (5, "corp.example", "domain"),
    ]  # 2 and 7: free mail; 6: no email


def test_the_free_mail_list_is_shipped_and_configurable() -> None:
    shipped = default_free_mail_domains()
    assert {"gmail.com", "yahoo.fr", "outlook.com", "icloud.com"} <= shipped and "acme.com" not in shipped
    extra = AccountsSpec(extra_free_mail_domains=["@Corp.example"]).free_mail
    assert extra == shipped | {"corp.example"}
    replaced = AccountsSpec(free_mail_domains=["beta.io"]).free_mail
    assert replaced == {"beta.io"}
    members = membership(LEADS, ACCOUNTS, replaced)
    assert members["lead_key"].to_list() == [1, 2, 3, 5, 7]  # gmail now forms an account, beta.io does not
    assert members.filter(pl.col("lead_key") == 2)["account_id"].to_list() == ["gmail.com"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"rollups": [{"name": "s", "metric": "seniorities", "points": 1}]}, "the seniorities figure needs"),
        (
            {"triggers": [{"name": "t", "when": {"score": {"crosses_up": 50}}, "actions": [{"tag": "x"}]}]},
            "account triggers take notify_owner or webhook, not tag",
        ),
        (
            {"triggers": [{"name": "t", "when": {"score": {"crosses_up": 500}}, "actions": [{"notify_owner": {}}]}]},
            "500.0 must be within (0, 100]",
        ),
        ({"rollups": [{"name": "x", "metric": "nope", "points": 1}]}, "Input should be 'members'"),
        ({"seniority": {"levels": {"boss": "(?<=x)"}}}, "invalid regular expression"),
        ({"fit": [{"name": "a", "when": {"industry": {"eq": "x"}}, "points": 1}],
          "rollups": [{"name": "a", "metric": "members", "points": 1}]}, "rule name 'a' is used twice"),
    ],
)  # fmt: skip
def test_account_model_mistakes_are_named(model: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AccountModelSpec.model_validate(model, context={"scale": Scale()})
    assert message in str(caught.value)
