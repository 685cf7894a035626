"""Settings, read from the environment (prefix TANDEM_) or a `.env` file."""

from enum import StrEnum
from pathlib import Path

import limits
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tandem.db"
DEFAULT_JWT_SECRETS = frozenset({"", "change-me", "changeme", "secret", "tandem"})
MIN_PRODUCTION_SECRET_BYTES = 32
# The largest `count` of POST /api/content/create: the content limit must allow it.
MAX_DRAFTS_PER_REQUEST = 50


class Environment(StrEnum):
    development = "development"
    production = "production"


class RegistrationPolicy(StrEnum):
    open = "open"  # anyone may register a new organization
    invite = "invite"  # accounts come from an admin's invitation only
    closed = "closed"  # nobody registers; admins create accounts or invite


class EmailVerification(StrEnum):
    optional = "optional"  # a registered account works at once
    required = "required"  # until the mailed link is followed, only /users/me answers


class JobExecutor(StrEnum):
    embedded = "embedded"  # an asyncio loop inside `tandem serve`
    procrastinate = "procrastinate"  # `tandem worker` processes, PostgreSQL only


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TANDEM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.development
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1)
    data_dir: Path = Path(".")
    log_level: str = "INFO"

    # Tokens
    jwt_secret: str | None = None
    jwt_issuer: str = "tandem"
    jwt_algorithm: str = "HS256"
    access_token_minutes: int = Field(default=15, ge=1)
    # Idle timeout: a login whose refresh token goes unused this long ends.
    refresh_token_days: int = Field(default=14, ge=1)
    # Absolute lifetime: a login ends this long after the password was given, refreshed or not.
    session_max_days: int = Field(default=30, ge=1)

    # Who may register, and whether a self-registered address must be verified (None: the
    # environment's default: open and optional in development, invite and required in production)
    registration: RegistrationPolicy | None = None
    email_verification: EmailVerification | None = None
    # How long the links mailed for an invitation, an address to verify, a password reset work
    invitation_hours: float = Field(default=72.0, gt=0)
    email_verification_hours: float = Field(default=48.0, gt=0)
    password_reset_minutes: float = Field(default=30.0, gt=0)

    # Redis: shared rate-limit storage when set
    redis_url: str | None = None

    # Rate limits, in the `limits` notation ("60/minute", "1000/hour"). "Per user" counts an
    # API key's requests against the user who created it.
    rate_limit_agents: str = "60/minute"  # per user, on /api/v1/agents*
    rate_limit_agents_organization: str = "300/minute"  # per organization, the same routes
    rate_limit_content: str = "200/hour"  # drafts asked for per user (a count of 50 costs 50)
    rate_limit_jobs: str = "120/minute"  # job submissions per user
    rate_limit_api_keys: str = "20/hour"  # API keys created per user
    rate_limit_login: str = "5/minute"  # per client address and e-mail
    rate_limit_login_address: str = "30/minute"  # per client address, whatever the e-mail
    rate_limit_login_failures: str = "10/hour"  # failed logins per e-mail, whatever the address
    rate_limit_register: str = "10/hour"  # per client address
    rate_limit_register_global: str = "200/hour"  # over all addresses
    # Proxies whose X-Forwarded-For is believed ("10.0.0.5,10.1.0.0/16"); none by default
    forwarded_allow_ips: str = ""

    # Sizes: a longer request body is refused (413) before it is read whole
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    job_max_payload_bytes: int = Field(default=64 * 1024, ge=256)  # as JSON; larger: 422
    job_max_result_bytes: int = Field(default=1024 * 1024, ge=256)  # larger: the attempt fails

    # Quotas per organization: a request that would go past one is refused (409)
    quota_waiting_threads: int = Field(default=1000, ge=1)  # review threads not yet decided
    quota_schedules: int = Field(default=200, ge=1)
    quota_people: int = Field(default=2000, ge=1)
    quota_api_keys: int = Field(default=100, ge=1)  # keys not revoked

    # E-mail: SMTP when a host is set, otherwise the outbox and the log
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "tandem@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    outbox_poll_seconds: float = Field(default=2.0, gt=0)
    outbox_max_attempts: int = Field(default=8, ge=1)
    outbox_retry_base_seconds: float = Field(default=30.0, gt=0)

    # Jobs
    job_retry_base_seconds: float = Field(default=2.0, gt=0)
    job_lease_seconds: float = Field(default=30.0, ge=1)
    job_concurrency: int = Field(default=8, ge=1)
    # Most jobs of one organization running at once in one process (below job_concurrency,
    # so other organizations always find a free slot), and over all processes (None: no limit)
    job_org_concurrency: int = Field(default=6, ge=1)
    job_org_concurrency_total: int | None = Field(default=None, ge=1)
    job_poll_seconds: float = Field(default=0.5, gt=0)
    job_executor: JobExecutor = JobExecutor.embedded
    # False: this process serves the API and runs no jobs (`tandem serve --no-worker`).
    worker_enabled: bool = True

    # /docs and /openapi.json: None means on in development, off in production
    api_docs: bool | None = None
    # /metrics: with a token, only for `Authorization: Bearer <token>`; without one, public
    # in development and absent (404) in production
    metrics_token: str | None = None

    # Where people reach the console: links in e-mails point there
    public_url: str = "http://127.0.0.1:8000"
    # Reviewers get at most one e-mail per person in this many seconds about threads waiting
    review_digest_seconds: float = Field(default=900.0, gt=0)

    # Webhooks: each attempt's deadline; loopback/private/link-local targets refused unless allowed
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_allow_private: bool = False

    # Models: any OpenAI-compatible endpoint; none configured means the offline model
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str | None = None
    # Per-agent model names at the same endpoint, e.g. {"classifier": "small-model"};
    # "offline" puts that agent on the offline model.
    llm_agent_models: dict[str, str] = Field(default_factory=dict)
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0)
    agent_sync_timeout_seconds: float = Field(default=30.0, gt=0)
    # A streamed run (`stream: true`) that has not finished in this long fails
    agent_stream_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    agent_max_input_chars: int = Field(default=50_000, ge=1)

    # Scheduling: how long one generation may search when the request names no timeout
    schedule_solver_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Generations solving at once per process; each uses two CP-SAT threads
    schedule_solver_concurrency: int = Field(default=1, ge=1)
    # Of those, most for one organization at once
    schedule_solver_org_concurrency: int = Field(default=1, ge=1)

    # Content: model calls writing drafts at once, per process, over all generation jobs
    content_concurrency: int = Field(default=10, ge=1)

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://")):
            raise ValueError(
                "TANDEM_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+psycopg://"
            )
        return value

    @field_validator(
        "rate_limit_agents",
        "rate_limit_agents_organization",
        "rate_limit_content",
        "rate_limit_jobs",
        "rate_limit_api_keys",
        "rate_limit_login",
        "rate_limit_login_address",
        "rate_limit_login_failures",
        "rate_limit_register",
        "rate_limit_register_global",
    )
    @classmethod
    def _parsable_limit(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a rate limit; write it like '60/minute' or '1000 per hour'"
            ) from exc
        return value

    @field_validator("rate_limit_content")
    @classmethod
    def _fits_the_largest_request(cls, value: str) -> str:
        if limits.parse(value).amount < MAX_DRAFTS_PER_REQUEST:
            raise ValueError(
                f"{value!r} allows fewer drafts than one request may ask for "
                f"({MAX_DRAFTS_PER_REQUEST}); such a request could never pass"
            )
        return value

    @model_validator(mode="after")
    def _procrastinate_needs_postgresql(self) -> "Settings":
        if self.job_executor is JobExecutor.procrastinate and self.is_sqlite:
            raise ValueError(
                "TANDEM_JOB_EXECUTOR=procrastinate needs PostgreSQL (TANDEM_DATABASE_URL="
                "postgresql+psycopg://...); on SQLite use the embedded executor"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def registration_policy(self) -> RegistrationPolicy:
        if self.registration is not None:
            return self.registration
        return RegistrationPolicy.invite if self.is_production else RegistrationPolicy.open

    @property
    def email_verification_policy(self) -> EmailVerification:
        if self.email_verification is not None:
            return self.email_verification
        return EmailVerification.required if self.is_production else EmailVerification.optional

    @property
    def docs_enabled(self) -> bool:
        return self.api_docs if self.api_docs is not None else not self.is_production

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
