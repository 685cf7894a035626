"""Row ids: UUIDs of version 7 (RFC 9562), so that a table's new rows sort after its old
ones and each insert lands at the end of the primary key's index."""

import time
import uuid
from datetime import UTC, datetime

from tandem.db import new_id


def test_an_id_is_a_version_7_uuid_of_its_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_ids_made_later_sort_after_as_uuids_and_as_the_hex_sqlite_stores() -> None:
    earlier = new_id()
    later = new_id()
    while later.int >> 80 == earlier.int >> 80:  # the next millisecond
        later = new_id()
    assert earlier < later
    assert earlier.hex < later.hex
    assert str(earlier) < str(later)


def test_ids_of_the_same_millisecond_differ_in_74_random_bits() -> None:
    made = [new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    random_bits = {(m.int >> 64 & 0xFFF, m.int & (2**62 - 1)) for m in made}
    assert len(random_bits) == len(made)


def test_a_row_gets_one_by_default() -> None:
    from tandem.identity.models import Organization

    now = datetime.now(UTC)
    organization = Organization(name="Acme", created_at=now, updated_at=now)
    default = Organization.__table__.c.id.default
    assert default is not None
    assert organization.id is None  # the default is applied at INSERT
    assert uuid.UUID(str(default.arg(None))).version == 7
