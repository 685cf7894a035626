"""The e-mails identity sends. Plain text; the only text in them chosen by someone else is
the recipient's name, reduced to letters and shortened, so a registrant cannot put a link,
a phone number or a message into a mail sent to an address they do not own."""

import unicodedata

NAME_IN_MAIL_CHARS = 24


def name_for_mail(full_name: str) -> str:
    """Letters, marks, spaces, apostrophes and hyphens only; at most NAME_IN_MAIL_CHARS."""
    kept = "".join(
        c if unicodedata.category(c)[0] in "LM" or c in "'-" else " " if c.isspace() else ""
        for c in full_name
    )
    name = " ".join(kept.split())
    if len(name) > NAME_IN_MAIL_CHARS:
        name = name[: NAME_IN_MAIL_CHARS + 1].rsplit(" ", 1)[0][:NAME_IN_MAIL_CHARS] + "…"
    return name or "there"


def welcome_email(*, full_name: str) -> tuple[str, str]:
    return "Welcome to Tandem", (
        f"Hello {name_for_mail(full_name)},\n"
        "\n"
        "Your Tandem account is ready. Agents do the work there; you stay in charge of it.\n"
        "\n"
        "-- Tandem\n"
    )


def verification_email(*, full_name: str, link: str, hours: float) -> tuple[str, str]:
    return "Confirm your e-mail address for Tandem", (
        f"Hello {name_for_mail(full_name)},\n"
        "\n"
        "Someone registered a Tandem account with this address. If it was you, confirm it:\n"
        "\n"
        f"{link}\n"
        "\n"
        f"The link works once, for {hours:g} hours. If it was not you, ignore this e-mail.\n"
        "\n"
        "-- Tandem\n"
    )


def invitation_email(*, link: str, hours: float) -> tuple[str, str]:
    return "You are invited to Tandem", (
        "Hello,\n"
        "\n"
        "An administrator invited this address to their organization on Tandem.\n"
        "Choose your password here:\n"
        "\n"
        f"{link}\n"
        "\n"
        f"The link works once, for {hours:g} hours.\n"
        "\n"
        "-- Tandem\n"
    )


def password_reset_email(*, link: str, minutes: float) -> tuple[str, str]:
    return "Reset your Tandem password", (
        "Hello,\n"
        "\n"
        "Someone asked to reset the password of the Tandem account with this address.\n"
        "If it was you, choose a new one here:\n"
        "\n"
        f"{link}\n"
        "\n"
        f"The link works once, for {minutes:g} minutes; every sign-in of the account ends\n"
        "when the password changes. If it was not you, ignore this e-mail.\n"
        "\n"
        "-- Tandem\n"
    )
