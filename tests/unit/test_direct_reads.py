"""What the direct read path compiles and keeps (tandem/direct_reads.py); what it reads is
compared with SQLAlchemy's own reads in tests/integration/test_direct_reads.py."""

import uuid

import pytest
from sqlalchemy import bindparam, create_engine, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InvalidRequestError

from tandem.direct_reads import MAX_COMPILED, SqliteReads, compile_read
from tandem.jobs.models import Job, JobStatus


def test_a_statement_sqlalchemy_would_finish_at_execution_is_refused() -> None:
    """An expanding IN list is rendered by SQLAlchemy's execution, which this path skips."""
    statement = select(Job.id).where(Job.status.in_(bindparam("statuses", expanding=True)))
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):
        with pytest.raises(ValueError, match="no expanding or literal parameters"):
            compile_read(statement, dialect)


def test_parameters_are_converted_by_their_types() -> None:
    statement = select(Job.id).where(Job.status == bindparam("status"), Job.id == bindparam("id"))
    compiled = compile_read(statement, sqlite.dialect())
    job_id = uuid.uuid4()
    values = compiled.positional({"status": JobStatus.dead, "id": job_id})
    # On SQLite a UUID is stored as 32 hex digits, an enum as its value.
    assert values == ("dead", job_id.hex)
    with pytest.raises(InvalidRequestError, match="required for bind parameter 'status'"):
        compiled.positional({"id": job_id})  # a parameter left out is an error, not NULL


def test_compiled_statements_are_kept_within_a_bound() -> None:
    reads = SqliteReads(create_engine("sqlite://"))
    kept = select(literal(-1))
    first = reads.compiled(kept)
    assert reads.compiled(kept) is first
    for number in range(MAX_COMPILED):
        reads.compiled(select(literal(number)))
    assert reads.compiled(kept) is not first  # compiled anew: the cache was emptied once full
