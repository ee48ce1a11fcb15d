"""Rendering and message building: escaping, strict variables, subjects, inlined CSS, unfolded headers."""

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.mail import Mailer, MailError, Sender, sample_context, validate_templates
from nurture.messages import compose, message_id_for, owner_alert

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"
WHEN = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
LONG_URL = "https://preferences.acme.example/email/unsubscribe/one-click?token={token}&message={message_id}"
SECRET = "test-unsubscribe-secret-0123456789abcdef"
SENDER = Sender(
    name="Acme Cloud",
    address="news@acme.example",
    postal_address="Acme Cloud SAS, 12 rue de la Paix, 75002 Paris, France",
    unsubscribe_url=LONG_URL,
    unsubscribe_mailto="mailto:unsubscribe@acme.example?subject=unsubscribe%20{token}",
)


def write(folder: Path, name: str, text: str, html: str) -> None:
    (folder / "email").mkdir(parents=True, exist_ok=True)
    (folder / "email" / f"{name}.txt.j2").write_text(text)
    (folder / "email" / f"{name}.html.j2").write_text(html)


def nurture_context(**lead: object) -> dict:
    context = sample_context("nurture", SENDER)
    context["lead"] = {**context["lead"], **lead}
    return context


def test_demo_templates_validate_with_the_sample_contexts() -> None:
    mailer = Mailer.for_portfolio(DEMO)
    validate_templates(mailer, ["nurture_intro", "nurture_case_study"], sample_context("nurture", SENDER))
    validate_templates(mailer, ["owner_alert"], sample_context("owner_alert", SENDER))


def test_a_missing_field_names_file_line_and_variable(tmp_path: Path) -> None:
    write(
        tmp_path,
        "broken",
        '{% extends "email/base.txt.j2" %}\n{% block subject %}Hi{% endblock %}\n{% block body %}\n'
        "Hello {{ lead.first_name }},\nyour plan: {{ lead.plan }}\n{% endblock %}\n",
        '{% extends "email/base.html.j2" %}{% block body %}<p>{{ lead.first_name }}</p>{% endblock %}',
    )
    with pytest.raises(MailError) as caught:
        validate_templates(Mailer([tmp_path]), ["broken"], sample_context("nurture", SENDER))
    [(file, line, message)] = caught.value.problems
    assert file == str(tmp_path / "email" / "broken.txt.j2")
    assert line == 5
    assert message == "'dict object' has no attribute 'plan'"
    assert str(caught.value).startswith(f"{tmp_path / 'email' / 'broken.txt.j2'}:5: ")


def test_a_missing_subject_block_and_a_missing_template_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "nosubject", "{{ lead.email }}", "<p>{{ lead.email }}</p>")
    with pytest.raises(MailError, match=r"nosubject\.txt\.j2: no \{% block subject %\}"):
        Mailer([tmp_path]).render("nosubject", sample_context("nurture", SENDER))
    with pytest.raises(MailError, match=r"email/absent\.txt\.j2: template not found"):
        Mailer([tmp_path]).render("absent", sample_context("nurture", SENDER))


def test_html_is_escaped_text_is_not_and_the_sandbox_refuses_internals(tmp_path: Path) -> None:
    mailer = Mailer.for_portfolio(DEMO)
    rendered = mailer.render("nurture_intro", nurture_context(company="<b>Evil & Co</b>", first_name="Zoé"))
    assert "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in rendered.html
    assert "<b>Evil" not in rendered.html
    assert "at <b>Evil & Co</b>." in rendered.text
    assert rendered.subject == "Zoé, a quick look at Sample Line"
    write(
        tmp_path,
        "sneaky",
        "{% block subject %}x{% endblock %}{{ lead.__class__.__mro__ }}",
        "<p>x</p>",
    )
    with pytest.raises(MailError, match="unsafe"):
        Mailer([tmp_path]).render("sneaky", sample_context("nurture", SENDER))


def test_portfolio_templates_override_the_project_ones(tmp_path: Path) -> None:
    write(
        tmp_path,
        "owner_alert",
        '{% extends "email/base.txt.j2" %}{% block subject %}Custom {{ trigger.name }}{% endblock %}'
        "{% block body %}custom body{% endblock %}{% block footer %}{% endblock %}",
        "<p>custom</p>",
    )
    rendered = Mailer([tmp_path]).render("owner_alert", sample_context("owner_alert", SENDER))
    assert rendered.subject == "Custom hot lead"
    assert rendered.text == "custom body\n\n--\n"


def test_nurture_message_is_multipart_with_unfolded_one_click_unsubscribe_and_inlined_css() -> None:
    mailer = Mailer.for_portfolio(DEMO)
    out = compose(
        mailer,
        "nurture_case_study",
        nurture_context(),
        kind="nurture",
        ref="enrolment:7:2",
        lead_key=3,
        run_id="run-1",
        to="ada@example.com",
        sender=SENDER,
        date=WHEN,
        unsubscribe_secret=SECRET,
    )
    raw = out.as_bytes()
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    unsubscribe = [line for line in header_lines if line.startswith(b"List-Unsubscribe:")]
    assert len(unsubscribe) == 1 and len(unsubscribe[0]) > 200  # one physical line, never folded
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0]
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in header_lines
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert all(part["Content-Transfer-Encoding"] == "quoted-printable" for part in parsed.iter_parts())
    message_id = message_id_for("nurture", "enrolment:7:2", "acme.example")
    assert parsed["Message-ID"] == f"<{message_id}>" and out.message_id == message_id
    url, mailto = (target.strip().strip("<>") for target in parsed["List-Unsubscribe"].split(","))
    assert url.startswith("https://preferences.acme.example/email/unsubscribe/one-click?token=")
    assert url.endswith("&message=" + message_id.replace("@", "%40"))
    assert mailto.startswith("mailto:unsubscribe@acme.example?subject=unsubscribe%20")
    text = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = parsed.get_body(("html",)).get_content()
    assert "Hi Ada," in text and "Teams like Analytical Engines Ltd's" in text
    assert "How a software team got started" in html
    assert f"Unsubscribe: {url}" in text and url.replace("&", "&amp;") in html
    assert "Acme Cloud SAS, 12 rue de la Paix, 75002 Paris, France" in text
    assert "Acme Cloud SAS, 12 rue de la Paix, 75002 Paris, France" in html
    assert "<style" not in html and '<h1 style="font-size: 20px;' in html
    for rendered in (text, html, parsed["Subject"]):
        assert "{{" not in rendered and "{%" not in rendered


def test_message_ids_are_stable_per_cause() -> None:
    assert message_id_for("nurture", "enrolment:1:0", "acme.example") == message_id_for(
        "nurture", "enrolment:1:0", "acme.example"
    )
    assert message_id_for("nurture", "enrolment:1:0", "x") != message_id_for("nurture", "enrolment:1:1", "x")
    assert message_id_for("nurture", "firing:1", "x") != message_id_for("owner_alert", "firing:1", "x")
    with pytest.raises(ValueError, match="unknown message kind 'sms'"):
        message_id_for("sms", "firing:1", "x")


def test_owner_alert_has_the_breakdown_table_and_no_unsubscribe() -> None:
    out = owner_alert(
        Mailer(),
        firing_id=12,
        lead={"key": 5, "lead_id": "LD-5", "email": "bob@client.example", "first_name": "Bob", "last_name": "Stone",
              "company": "Client & Sons", "owner_email": "sara@acme.example"},
        product_line={"name": "crm-suite", "title": "Acme CRM Suite"},
        journey={"stage": "evaluation", "score": 81.25, "band": "hot", "qualification": "SQL"},
        trigger={"name": "hot lead", "direction": "up", "score_before": 64.0},
        breakdown=[{"rule": "pricing page", "points": 20.0}, {"rule": "small company", "points": -5.0}],
        to="sara@acme.example",
        sender=Sender(name="leadscore", address="leadscore@acme.example"),
        run_id="run-9",
        date=WHEN,
    )  # fmt: skip
    assert out.kind == "owner_alert" and out.ref == "firing:12" and out.lead_key == 5
    assert out.subject == "[leadscore] hot lead: Bob Stone (Client & Sons) is hot at 81.2 on Acme CRM Suite"
    assert "List-Unsubscribe" not in out.parsed()
    parsed = email.message_from_bytes(out.as_bytes(), policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = parsed.get_body(("html",)).get_content()
    assert "Score:         81.2 (was 64.0)" in text
    assert "Qualification: SQL" in text
    assert "   +20.0  pricing page\n" in text and "    -5.0  small company\n" in text
    assert ">Client &amp; Sons</td>" in html
    assert '<td style="border-bottom: 1px solid #e4e7eb;padding: 6px;">pricing page</td>' in html
    assert "+20.0</td>" in html and "-5.0</td>" in html


def test_non_ascii_subjects_are_encoded_and_headers_cannot_be_injected() -> None:
    mailer = Mailer.for_portfolio(DEMO)
    out = compose(
        mailer, "nurture_intro", nurture_context(first_name="Zoé"), kind="nurture", ref="enrolment:1:0", lead_key=1,
        run_id="r", to="zoe@example.com", sender=SENDER, date=WHEN, unsubscribe_secret=SECRET,
    )  # fmt: skip
    head = out.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert b"Subject: =?utf-8?" in head
    assert out.parsed()["Subject"] == "Zoé, a quick look at Sample Line" == out.subject
    again = compose(
        mailer, "nurture_intro", nurture_context(first_name="Zoé"), kind="nurture", ref="enrolment:1:0", lead_key=1,
        run_id="r", to="zoe@example.com", sender=SENDER, date=WHEN, unsubscribe_secret=SECRET,
    )  # fmt: skip
    assert again.as_bytes() == out.as_bytes()  # same cause, same bytes
    with pytest.raises(MailError, match="header To must be one line of ASCII"):
        compose(
            mailer, "nurture_intro", nurture_context(), kind="nurture", ref="e:2", lead_key=2, run_id="r",
            to="a@example.com\r\nBcc: everyone@example.com", sender=SENDER, date=WHEN, unsubscribe_secret=SECRET,
        )  # fmt: skip


def test_an_email_message_built_elsewhere_is_accepted() -> None:
    from email.message import EmailMessage

    from nurture.messages import Outgoing

    msg = EmailMessage()
    msg["From"] = "Sales Ops <ops@acme.example>"
    msg["Subject"] = "Custom"
    msg.set_content("hello")
    out = Outgoing("id@acme.example", "owner_alert", "firing:1", 1, "r", "sara@acme.example", msg)
    assert (out.subject, out.envelope_from) == ("Custom", "ops@acme.example")
    assert out.as_bytes().startswith(b"From: Sales Ops <ops@acme.example>\r\n")


def test_a_long_non_ascii_subject_and_sender_name_stay_on_one_header_line_each() -> None:
    mailer = Mailer.for_portfolio(DEMO)
    sender = Sender(name="Équipe Acmé Cloud — Société", address="news@acme.example", postal_address="Paris")
    name = "Lucía Peña de la Fuente-Núñez (Aurora Systems S.L., Región de Murcia)"
    out = owner_alert(
        mailer, firing_id=7, lead={"key": 1, "lead_id": "L1", "first_name": name, "company": "Aurora Systems S.L."},
        product_line={"name": "crm", "title": "Acme CRM Suite"},
        journey={"stage": "evaluation", "score": 71.7, "band": "hot", "qualification": "SQL"},
        trigger={"name": "sales ready", "direction": "reached"}, breakdown=[{"rule": "demo", "points": 71.7}],
        to="rep@acme.example", sender=sender, run_id="r", date=WHEN,
    )  # fmt: skip
    head = out.as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    subject = next(line for line in head.split("\r\n") if line.startswith("Subject: "))
    assert len(subject) < 998 and all(len(word) <= 75 for word in subject.split(" ") if word.startswith("=?"))
    assert name in out.parsed()["Subject"]
    assert str(out.parsed()["From"]) == "Équipe Acmé Cloud — Société <news@acme.example>"


def test_nurture_email_without_an_unsubscribe_secret_is_refused() -> None:
    """No constant default key: unsigned (or constant-keyed) links would let anyone unsubscribe anyone."""
    with pytest.raises(MailError, match="needs the unsubscribe secret"):
        compose(
            Mailer.for_portfolio(DEMO), "nurture_intro", nurture_context(), kind="nurture", ref="e:1", lead_key=1,
            run_id="r", to="a@example.com", sender=SENDER, date=WHEN,
        )  # fmt: skip
