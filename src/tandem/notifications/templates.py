"""E-mail texts. Plain text: every client shows it, and there is nothing to escape."""


def _one_line(text: str) -> str:
    # A newline in a header would end it (header injection); names come from users.
    return " ".join(text.split())


def welcome_email(*, full_name: str, organization_name: str) -> tuple[str, str]:
    """(subject, body) of the e-mail sent to a newly registered or created user."""
    name = _one_line(full_name)
    organization = _one_line(organization_name)
    subject = f"Welcome to {organization} on Tandem"
    body = (
        f"Hello {name},\n"
        "\n"
        f"Your Tandem account in {organization} is ready. Agents do the work there;\n"
        "you stay in charge of it.\n"
        "\n"
        "-- Tandem\n"
    )
    return subject, body
