"""The one place the console takes the app's shared objects from."""

from tandem.jobs.router import JobQueueDep as QueueDep

__all__ = ["QueueDep"]
